// Package brokertest runs the real server-side broker for tests of code
// that talks to it: the embedded NATS server with thinfleet's accounts
// and JetStream, the enrollment service and the intake, so that an agent enrolls and
// connects exactly as it does against a real server.
package brokertest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/internal/poll"
	"github.com/thinfleet/thinfleet/services/enroll"
	"github.com/thinfleet/thinfleet/services/intake"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// ServiceToken is the service token of every test broker.
const ServiceToken = "brokertest-service-token"

// Options choose the test broker.
type Options struct {
	// Dir keeps the broker's data; a restart on the same Dir keeps it.
	Dir string
	// Port to listen on; 0 picks one.
	Port int
	// EnrollToken agents enroll with.
	EnrollToken string
	// Approve keeps new agents pending.
	Approve bool
	// ServiceToken, from which every key derives; ServiceToken (the
	// constant) when empty.
	ServiceToken string
	// EnrollRate, EnrollBurst and MaxPending are the enrollment service's
	// limits; its defaults when zero.
	EnrollRate  float64
	EnrollBurst int
	MaxPending  int
	// HoldLimit is how long an enrollment connection may stay open.
	HoldLimit time.Duration
}

// Server is a running test broker with enrollment.
type Server struct {
	B *broker.Broker
	// Conn is a service connection with full rights.
	Conn  *nats.Conn
	Store *store.Store
	URL   string
	Port  int

	cancel context.CancelFunc
	done   chan struct{}
	sys    *nats.Conn
}

// Start starts a broker and its enrollment service; they stop at the end
// of the test, or at Stop.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.ServiceToken == "" {
		opts.ServiceToken = ServiceToken
	}
	b, err := broker.Start(broker.Options{
		DataDir: opts.Dir, Listen: fmt.Sprintf("127.0.0.1:%d", opts.Port),
		ServiceToken: opts.ServiceToken, EnrollToken: opts.EnrollToken, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("broker: %v", err)
	}
	s := &Server{B: b, URL: b.ClientURL(), Port: b.Addr().(*net.TCPAddr).Port, done: make(chan struct{})}
	if s.Conn, err = b.ConnectService("test"); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(s.Conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.Store, err = store.Open(ctx, js, store.Options{}); err != nil {
		t.Fatalf("fleet store: %v", err)
	}
	signer, account := b.AgentSigner()
	sys, err := b.ConnectSystem("test-enroll-sys")
	if err != nil {
		t.Fatal(err)
	}
	s.sys = sys
	enrollKey, _ := wire.EnrollAccountKey(opts.EnrollToken)
	enrollAccount, _ := enrollKey.PublicKey()
	svc, err := enroll.New(enroll.Options{
		Log: slog.New(slog.DiscardHandler), Store: s.Store, Conn: s.Conn, Revoker: b, Approve: opts.Approve,
		Rate: opts.EnrollRate, Burst: opts.EnrollBurst, MaxPending: opts.MaxPending,
		SysConn: sys, EnrollAccount: enrollAccount, HoldLimit: opts.HoldLimit,
		Issue: func(id, key string) (string, error) { return broker.AgentJWT(signer, account, id, key) },
	})
	if err != nil {
		t.Fatal(err)
	}
	in, err := intake.New(intake.Options{Log: slog.New(slog.DiscardHandler), Conn: s.Conn})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	s.cancel = rcancel
	go func() {
		defer close(s.done)
		g, gctx := errgroup.WithContext(rctx)
		g.Go(func() error { return svc.Run(gctx) })
		g.Go(func() error { return in.Run(gctx) })
		_ = g.Wait()
	}()
	t.Cleanup(s.Stop)
	// The enrollment service answers once it has subscribed: wait for an
	// answer (a refusal of an empty request) before handing the broker
	// to the test.
	poll.Eventually(t, 10*time.Second, "the enrollment service answers", func() error {
		_, err := s.Conn.Request(wire.EnrollSubject("brokertest-probe"), nil, time.Second)
		return err
	})
	return s
}

// Stop stops the enrollment service and the broker; it may be called
// more than once.
func (s *Server) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.cancel = nil
	s.Conn.Close()
	s.sys.Close()
	s.B.Shutdown()
}
