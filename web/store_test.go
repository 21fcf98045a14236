package web

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/store"
)

// startStore starts a real embedded broker and opens the fleet state on a
// service connection to it; both end with the test.
func startStore(t testing.TB) (*broker.Broker, *nats.Conn, *store.Store) {
	t.Helper()
	b, err := broker.Start(broker.Options{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", ServiceToken: "svc", EnrollToken: "enroll",
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	nc, err := b.ConnectService("web-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := store.Open(ctx, js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b, nc, store
}
