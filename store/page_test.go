package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
)

// openStore starts a nats-server with JetStream on a random port and opens
// a Store on it; both end with the test.
func openStore(t testing.TB) *store.Store {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEventPage(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	// 30 events: device a gets every third, all others go to b.
	for i := 1; i <= 30; i++ {
		dev, kind := "b", fleet.EventConnected
		if i%3 == 0 {
			dev, kind = "a", fleet.EventInstalled
		}
		e := fleet.Event{Device: dev, Event: kind, Version: fmt.Sprint(i)}
		if err := s.AppendEvent(ctx, e, ""); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		f        fleet.EventFilter
		before   uint64
		n        int
		want     []string // versions, newest first
		wantMore bool
	}{
		{"newest", fleet.EventFilter{}, 0, 3, []string{"30", "29", "28"}, true},
		{"before", fleet.EventFilter{}, 28, 2, []string{"27", "26"}, true},
		{"last page", fleet.EventFilter{}, 3, 5, []string{"2", "1"}, false},
		{"device", fleet.EventFilter{Device: "a"}, 0, 4, []string{"30", "27", "24", "21"}, true},
		{"device before", fleet.EventFilter{Device: "a"}, 7, 4, []string{"6", "3"}, false},
		{"kind", fleet.EventFilter{Kind: fleet.EventInstalled}, 10, 2, []string{"9", "6"}, true},
		{"version", fleet.EventFilter{Version: "5"}, 0, 10, []string{"5"}, false},
		{"none", fleet.EventFilter{Device: "c"}, 0, 10, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, more, err := s.EventPage(ctx, tt.f, tt.before, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			var vs []string
			for _, e := range got {
				vs = append(vs, e.Version)
				if e.Seq == 0 {
					t.Errorf("event %s has no sequence", e.Version)
				}
			}
			if fmt.Sprint(vs) != fmt.Sprint(tt.want) || more != tt.wantMore {
				t.Errorf("EventPage = %v more=%v, want %v more=%v", vs, more, tt.want, tt.wantMore)
			}
		})
	}
}
