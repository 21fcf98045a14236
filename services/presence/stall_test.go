package presence_test

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/services/presence"
	"github.com/thinfleet/thinfleet/store"
)

// stallProxy is a TCP proxy to the broker that can stop passing bytes on,
// as a store whose disk or network stalls does: what is sent meanwhile
// waits, and flows once it resumes.
type stallProxy struct {
	addr string
	mu   sync.Mutex
	cond *sync.Cond
	held bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{addr: ln.Addr().String()}
	p.cond = sync.NewCond(&p.mu)
	var wg sync.WaitGroup
	var conns []net.Conn
	var connsMu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		p.hold(false)
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			connsMu.Lock()
			conns = append(conns, c, up)
			connsMu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); p.copy(up, c) }()
			go func() { defer wg.Done(); p.copy(c, up) }()
		}
	}()
	return p
}

func (p *stallProxy) hold(held bool) {
	p.mu.Lock()
	p.held = held
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *stallProxy) copy(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.held {
			p.cond.Wait()
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or closed: dst closes too
		}
	}
}

// TestStoreStallDoesNotFlap performs the flap fault: many devices
// heartbeat while presence's store stalls for several of their intervals,
// and a new device arrives meanwhile, so presence has a write that hangs.
// No device that kept heartbeating is ever shown notAlive or gets a
// "disconnected" event, and the newcomer's flip is written once the store
// answers again.
func TestStoreStallDoesNotFlap(t *testing.T) {
	e := setup(t)
	proxy := newStallProxy(t, e.srv.URL()[len("nats://"):])
	slow, err := nats.Connect("nats://"+proxy.addr, nats.Name("presence-store"),
		nats.UserInfo(natstest.AppUser, natstest.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	js, err := jetstream.New(slow)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(natstest.Context(t), js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := presence.New(presence.Options{Log: natstest.Logger(t), Store: st, Conn: e.srv.Conn("presence")})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, p.Run)

	const interval = 500 * time.Millisecond
	const n = 100
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%03d", i)
		beating(t, e.agent, ids[i], interval)
	}
	for _, id := range ids {
		e.waitAlive(t, id, true)
	}
	ctx := natstest.Context(t)
	notAlive := func() error {
		ds, err := e.store.Devices(ctx)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.ID != "newcomer" && !d.Alive {
				return fmt.Errorf("%s shown notAlive while it heartbeats", d.ID)
			}
		}
		return nil
	}

	proxy.hold(true)
	beating(t, e.agent, "newcomer", interval)
	// The stall lasts eight of the devices' intervals.
	stallEnd := time.After(8 * interval)
	for stalled := true; stalled; {
		select {
		case <-stallEnd:
			stalled = false
		case <-time.After(50 * time.Millisecond):
			if err := notAlive(); err != nil {
				t.Error(err)
			}
		}
	}
	proxy.hold(false)
	e.waitAlive(t, "newcomer", true)
	// What presence did while the store stalled is written now: watch
	// for a while longer.
	watchEnd := time.After(2 * time.Second)
	for watching := true; watching; {
		select {
		case <-watchEnd:
			watching = false
		case <-time.After(50 * time.Millisecond):
			if err := notAlive(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, id := range ids {
		for _, ev := range natstest.Events(t, e.store, id) {
			if ev.Event == fleet.EventDisconnected {
				t.Errorf("%s: a false %q event: %+v", id, ev.Event, ev)
			}
		}
	}
}

// TestPresenceBehindDoesNotFlap holds presence's own connection to the
// broker, as a starved process or a congested link does: heartbeats wait
// in the network, not in the devices. No device that kept heartbeating is
// shown notAlive, then or once the held heartbeats arrive.
func TestPresenceBehindDoesNotFlap(t *testing.T) {
	e := setup(t)
	proxy := newStallProxy(t, e.srv.URL()[len("nats://"):])
	behind, err := nats.Connect("nats://"+proxy.addr, nats.Name("presence"),
		nats.UserInfo(natstest.AppUser, natstest.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer behind.Close()
	p, err := presence.New(presence.Options{Log: natstest.Logger(t), Store: e.store, Conn: behind})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, p.Run)

	const interval = 300 * time.Millisecond
	const n = 50
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%03d", i)
		beating(t, e.agent, ids[i], interval)
	}
	for _, id := range ids {
		e.waitAlive(t, id, true)
	}
	notAlive := func() error {
		ds, err := e.store.Devices(natstest.Context(t))
		if err != nil {
			return err
		}
		for _, d := range ds {
			if !d.Alive {
				return fmt.Errorf("%s shown notAlive while it heartbeats", d.ID)
			}
		}
		return nil
	}
	proxy.hold(true)
	// Held for ten of the devices' intervals, then let go and watched for
	// as long again.
	for _, hold := range []bool{true, false} {
		end := time.After(10 * interval)
		for waiting := true; waiting; {
			select {
			case <-end:
				waiting = false
			case <-time.After(50 * time.Millisecond):
				if err := notAlive(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if hold {
			proxy.hold(false)
		}
	}
	for _, id := range ids {
		for _, ev := range natstest.Events(t, e.store, id) {
			if ev.Event == fleet.EventDisconnected {
				t.Errorf("%s: a false %q event: %+v", id, ev.Event, ev)
			}
		}
	}
}
