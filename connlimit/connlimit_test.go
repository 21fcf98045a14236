package connlimit

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// serve accepts on a Listener with opts over a real TCP socket and
// answers each connection's first byte with "ok", keeping it open.
func serve(t *testing.T, opts Options) *Listener {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(raw, opts)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 1)
				if _, err := c.Read(b); err != nil {
					return
				}
				c.Write([]byte("ok"))
				io.Copy(io.Discard, c) // hold until the client hangs up
			}()
		}
	}()
	return l
}

// dialFrom connects to l from the local address ip (any of 127/8 on
// Linux's loopback).
func dialFrom(t *testing.T, l net.Listener, ip string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// answered reports whether c is served: it sends a byte and waits up to
// wait for "ok". A connection the listener closed reads EOF or reset.
func answered(c net.Conn, wait time.Duration) (bool, error) {
	if _, err := c.Write([]byte("x")); err != nil {
		return false, err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	b := make([]byte, 2)
	_, err := io.ReadFull(c, b)
	return err == nil, err
}

func TestPerAddressCapClosesTheNewcomer(t *testing.T) {
	l := serve(t, Options{PerAddr: 3})
	var held []net.Conn
	for i := range 3 {
		c := dialFrom(t, l, "127.0.0.1")
		if ok, err := answered(c, 5*time.Second); !ok {
			t.Fatalf("connection %d under the cap: not served: %v", i+1, err)
		}
		held = append(held, c)
	}
	over := dialFrom(t, l, "127.0.0.1")
	ok, err := answered(over, 5*time.Second)
	var ne net.Error
	if ok || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("4th connection from one address: served=%v err=%v, want it closed at once", ok, err)
	}
	if got := l.Refused(); got != 1 {
		t.Errorf("Refused() = %d, want 1", got)
	}
	if ok, err := answered(dialFrom(t, l, "127.0.0.2"), 5*time.Second); !ok {
		t.Fatalf("another address while the first is capped: not served: %v", err)
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for l.Open() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("Open() = %d after one closed, want 3", l.Open())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ok, err := answered(dialFrom(t, l, "127.0.0.1"), 5*time.Second); !ok {
		t.Fatalf("after one of its connections closed, the address is still refused: %v", err)
	}
}

// TestTotalCapWaits fills the total from several addresses: the next
// connection is not closed but waits, and is served once a slot frees.
func TestTotalCapWaits(t *testing.T) {
	l := serve(t, Options{PerAddr: 2, Total: 4})
	var held []net.Conn
	for _, ip := range []string{"127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"} {
		c := dialFrom(t, l, ip)
		if ok, err := answered(c, 5*time.Second); !ok {
			t.Fatalf("from %s under the total: not served: %v", ip, err)
		}
		held = append(held, c)
	}
	waiting := dialFrom(t, l, "127.0.0.3")
	ok, err := answered(waiting, 300*time.Millisecond)
	var ne net.Error
	if ok || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("5th connection over the total: served=%v err=%v, want it left waiting", ok, err)
	}
	held[0].Close()
	waiting.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2)
	if _, err := io.ReadFull(waiting, b); err != nil {
		t.Fatalf("waiting connection after a slot freed: %v", err)
	}
	if got := l.Open(); got != 4 {
		t.Errorf("Open() = %d, want 4", got)
	}
}
