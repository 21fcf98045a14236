// Package natstest runs what the services' tests share: a real nats-server
// in-process on a random port with JetStream on disk in a temporary
// folder, connections to it, a store.Store on it, a test logger, a way to
// run a service for the length of a test, and polling with a deadline.
//
// It is for tests only; nothing outside services/ may import it.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/store"
)

// The accounts and users of a server started with Accounts.
const (
	AppAccount = "THINFLEET"
	SysAccount = "SYS"
	AppUser    = "app"
	SysUser    = "sys"
	Password   = "secret"
)

// Options choose the server a test gets.
type Options struct {
	// Accounts configures an application account (AppAccount, JetStream
	// on, user AppUser) and a system account (SysAccount, user SysUser),
	// so the broker publishes connect and disconnect events. Without it
	// the server has the global account only and no users.
	Accounts bool
	// SyncAlways puts every JetStream write on disk before it is
	// acknowledged, as the production broker does: for benchmarks that
	// must pay what a real server pays.
	SyncAlways bool
}

// Server is a running nats-server that shuts down when the test ends.
type Server struct {
	t    testing.TB
	srv  *server.Server
	opts Options
}

// Start starts a server with JetStream, on a random port, with its store
// in a temporary folder of t.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	sopts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), SyncAlways: opts.SyncAlways,
	}
	if opts.Accounts {
		app := server.NewAccount(AppAccount)
		sys := server.NewAccount(SysAccount)
		sopts.Accounts = []*server.Account{app, sys}
		sopts.SystemAccount = SysAccount
		sopts.Users = []*server.User{
			{Username: AppUser, Password: Password, Account: app},
			{Username: SysUser, Password: Password, Account: sys},
		}
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready after 10s")
	}
	if opts.Accounts {
		// Accounts given in server.Options have no JetStream until asked.
		acc, err := srv.LookupAccount(AppAccount)
		if err != nil {
			t.Fatalf("lookup %s: %v", AppAccount, err)
		}
		if err := acc.EnableJetStream(nil, nil); err != nil {
			t.Fatalf("enable jetstream for %s: %v", AppAccount, err)
		}
	}
	return &Server{t: t, srv: srv, opts: opts}
}

// URL is the server's client URL.
func (s *Server) URL() string { return s.srv.ClientURL() }

// Conn opens a connection in the application account named name, closed
// when the test ends.
func (s *Server) Conn(name string, extra ...nats.Option) *nats.Conn {
	s.t.Helper()
	opts := []nats.Option{nats.Name(name)}
	if s.opts.Accounts {
		opts = append(opts, nats.UserInfo(AppUser, Password))
	}
	return s.connect(append(opts, extra...))
}

// SysConn opens a connection in the system account; the server must have
// been started with Accounts.
func (s *Server) SysConn() *nats.Conn {
	s.t.Helper()
	if !s.opts.Accounts {
		s.t.Fatal("natstest: SysConn needs Options.Accounts")
	}
	return s.connect([]nats.Option{nats.Name("test-sys"), nats.UserInfo(SysUser, Password)})
}

func (s *Server) connect(opts []nats.Option) *nats.Conn {
	s.t.Helper()
	nc, err := nats.Connect(s.URL(), opts...)
	if err != nil {
		s.t.Fatalf("connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// Store opens the fleet state on a new connection of its own.
func (s *Server) Store() *store.Store {
	s.t.Helper()
	js, err := jetstream.New(s.Conn("test-store"))
	if err != nil {
		s.t.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := store.Open(ctx, js, store.Options{})
	if err != nil {
		s.t.Fatalf("open store: %v", err)
	}
	return st
}

// Publish stores data in the agent stream as the intake does with what an
// agent sends on subject, and fails the test unless the stream
// acknowledges it.
func Publish(t testing.TB, nc *nats.Conn, subject string, data []byte) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, store.StoredSubject(subject), data); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
}
