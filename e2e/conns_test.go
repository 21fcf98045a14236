package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/wire"
)

// TestHTTPConnectionFlood attacks the server's HTTP port as an outsider
// with no token: hundreds of connections that send nothing, first from
// one address, then from eight. The connections over an address's cap
// are closed at once, the rest are closed when the read timeout passes,
// and meanwhile /readyz answers another address and an agent can still
// reach the broker. The limits are set through the environment, which a
// server without them ignores.
func TestHTTPConnectionFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binaries")
	}
	const perAddr, total, readTimeout = 16, 64, 6 * time.Second
	t.Setenv("THINFLEET_HTTP_CONNS_PER_ADDR", fmt.Sprint(perAddr))
	t.Setenv("THINFLEET_HTTP_CONNS", fmt.Sprint(total))
	t.Setenv("THINFLEET_HTTP_READ_TIMEOUT", readTimeout.String())
	t.Setenv("THINFLEET_HTTP_IDLE_TIMEOUT", readTimeout.String())
	root := t.TempDir()
	srv := startServer(t, filepath.Join(root, "data"), filepath.Join(root, "updates"), "127.0.0.1:0", "127.0.0.1:0")
	ready(t, 60*time.Second, "/readyz", srv.httpURL+"/readyz")
	pid := srv.cmd.Process.Pid
	before := openFDs(t, pid)

	// One address opens 200 idle connections.
	const flood = 200
	conns := dialMany(t, "127.0.0.1", srv.httpAddr, flood)
	took := waitFor(t, 5*time.Second, "connections over the per-address cap closed", func() (bool, string) {
		n := countClosed(conns)
		return n >= flood-perAddr, fmt.Sprintf("%d of %d closed", n, flood)
	})
	if n := countClosed(conns); n != flood-perAddr {
		t.Fatalf("%d of %d idle connections closed before the read timeout, want exactly the %d over the cap", n, flood, flood-perAddr)
	}
	t.Logf("MEASURED: %d connections over the per-address cap of %d closed within %v", flood-perAddr, perAddr, took.Round(time.Millisecond))
	t.Logf("MEASURED: descriptors held by the server: %d before the flood, %d under %d idle connections from one address",
		before, openFDs(t, pid), flood)

	// Meanwhile another address is served and the broker accepts agents.
	other := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dialerFrom("127.0.0.2").DialContext}}
	resp, err := other.Get(srv.httpURL + "/readyz")
	if err != nil {
		t.Fatalf("/readyz from another address during the flood: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz during the flood: %s", resp.Status)
	}
	natsConnects(t, srv)

	// The idle connections under the cap are closed by the read timeout.
	took = waitFor(t, 4*readTimeout, "idle connections closed by the read timeout", func() (bool, string) {
		n := countClosed(conns)
		return n == flood, fmt.Sprintf("%d of %d closed", n, flood)
	})
	t.Logf("MEASURED: the %d idle connections under the cap closed %v after the first ones (read timeout %v)", perAddr, took.Round(100*time.Millisecond), readTimeout)

	// Eight addresses, 40 idle connections each: 128 within their caps,
	// twice the total. Accepted in the order dialled, the first four
	// addresses fill the total, their surplus closed on the way (the
	// fourth's is accepted, and closed, only as slots free); the rest wait
	// in the kernel's backlog, costing the server no descriptor.
	var many []net.Conn
	for i := range 8 {
		many = append(many, dialMany(t, fmt.Sprintf("127.0.0.%d", 10+i), srv.httpAddr, 40)...)
	}
	filled := (total/perAddr - 1) * (40 - perAddr)
	waitFor(t, 5*time.Second, "the total filled", func() (bool, string) {
		n := countClosed(many)
		return n >= filled, fmt.Sprintf("%d of %d closed", n, len(many))
	})
	fds := openFDs(t, pid)
	t.Logf("MEASURED: descriptors held by the server: %d under %d idle connections from 8 addresses (caps %d per address, %d in all)", fds, len(many), perAddr, total)
	if fds > before+total+16 {
		t.Errorf("server holds %d descriptors, %d before the flood: more than the total of %d connections", fds, before, total)
	}
	natsConnects(t, srv)

	// Every one of them is served or closed once the read timeouts free
	// the slots.
	waitFor(t, 10*readTimeout, "every connection of the eight addresses closed", func() (bool, string) {
		n := countClosed(many)
		return n == len(many), fmt.Sprintf("%d of %d closed", n, len(many))
	})
}

// dialerFrom dials from the local address ip: Linux's loopback answers
// for the whole of 127/8, so one machine plays many clients.
func dialerFrom(ip string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
}

// dialMany opens n TCP connections from ip to addr and sends nothing.
func dialMany(t *testing.T, ip, addr string, n int) []net.Conn {
	t.Helper()
	d := dialerFrom(ip)
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d from %s: %v", i+1, ip, err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	return conns
}

// countClosed counts the connections the server has closed: a read
// returns at once with EOF or a reset, where an open idle one times out.
func countClosed(conns []net.Conn) int {
	n := 0
	b := make([]byte, 1)
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, err := c.Read(b)
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			n++
		}
	}
	return n
}

// natsConnects fails t unless the broker accepts a client and answers it:
// a new agent signing in to the enrollment account, as its first
// connection does.
func natsConnects(t *testing.T, srv *server) {
	t.Helper()
	account, err := wire.EnrollAccountKey(enrollToken)
	if err != nil {
		t.Fatal(err)
	}
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Expires = time.Now().Add(10 * time.Minute).Unix()
	userJWT, err := uc.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	nc, err := nats.Connect(srv.natsURL, nats.UserJWTAndSeed(userJWT, string(seed)), nats.Timeout(5*time.Second), nats.NoReconnect())
	if err != nil {
		t.Fatalf("NATS connect during the flood: %v", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := nc.FlushWithContext(ctx); err != nil {
		t.Fatalf("NATS round trip during the flood: %v", err)
	}
}

// openFDs counts the descriptors process pid holds.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("count descriptors: %v", err)
	}
	return len(entries)
}
