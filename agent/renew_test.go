package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/broker/brokertest"
	"github.com/thinfleet/thinfleet/internal/poll"
	fleetstore "github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// TestRenewsRefusedCredentials restarts the server side with a new
// service token, so every key changes and the broker refuses the agent's
// credentials: the agent enrolls again with the same key and comes back
// by itself.
func TestRenewsRefusedCredentials(t *testing.T) {
	first := brokertest.Start(t, brokertest.Options{EnrollToken: testToken, ServiceToken: "first-service-token"})
	ta := startAgent(t, first.URL, Options{})
	reported := func(s *brokertest.Server) func() (bool, string) {
		return func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			js, _ := jetstream.New(s.Conn)
			st, err := js.Stream(ctx, fleetstore.AgentStream)
			if err != nil {
				return false, err.Error()
			}
			_, err = st.GetLastMsgForSubject(ctx, fleetstore.StoredSubject(wire.HWReportSubject(ta.ID())))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return false, "no hardware report yet"
			}
			return err == nil, ""
		}
	}
	waitFor(t, "a report to the first server", reported(first))
	port := first.Port
	first.Stop()

	second := brokertest.Start(t, brokertest.Options{EnrollToken: testToken, ServiceToken: "second-service-token", Port: port})
	waitFor(t, "a report to the server with new keys", reported(second))
	if !ta.log.contains("credentials renewed") {
		t.Error("the agent reported without renewing its credentials")
	}
}

// holdingProxy forwards TCP connections to a broker until the broker tells
// a client that its credentials were revoked; from then on it accepts new
// connections and holds them, silent: a client connecting waits for the
// server's greeting until its own timeout.
type holdingProxy struct {
	ln      net.Listener
	target  string
	holding atomic.Bool
	held    atomic.Int32
	mu      sync.Mutex
	conns   []net.Conn
}

func startHoldingProxy(t *testing.T, target string) *holdingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdingProxy{ln: ln, target: target}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			if p.holding.Load() {
				p.held.Add(1)
				continue
			}
			go p.forward(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *holdingProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *holdingProxy) forward(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, s)
	p.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if bytes.Contains(bytes.ToLower(buf[:n]), []byte("revoked")) {
				p.holding.Store(true)
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
}

// renewalRunning reports whether a credential renewal goroutine exists.
func renewalRunning() bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Contains(buf[:n], []byte("(*Agent).authRefused.func"))
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestRunWaitsForRenewal revokes a connected agent, which makes it ask
// for new credentials at once, and holds that request's connection
// unanswered. Stopping the agent then: Run returns only after the
// renewal has ended, so nothing of the agent's keeps running (or writes
// to its state folder) once Run has returned.
func TestRunWaitsForRenewal(t *testing.T) {
	f := startFleet(t, -1)
	proxy := startHoldingProxy(t, strings.TrimPrefix(f.url(), "nats://"))
	ta := startAgent(t, proxy.url(), Options{})
	waitReady(t, f, "dev-1", 1)
	revoke(t, f, "dev-1")
	waitFor(t, "a renewal waiting on a held connection", func() (bool, string) {
		return proxy.held.Load() > 0 && renewalRunning(), fmt.Sprintf("held %d, renewal running %v", proxy.held.Load(), renewalRunning())
	})
	ta.stop(t)
	// The goroutine that ended before Run returned may still be on its
	// way out of the scheduler: poll, briefly. Without the tracking, it
	// waits for its connection's 10s timeout.
	poll.Eventually(t, 2*time.Second, "no credential renewal running after Run returned", func() error {
		if renewalRunning() {
			return errors.New("a renewal runs")
		}
		return nil
	})
}
