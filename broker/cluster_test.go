package broker

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestRouteURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"n1:6222", "nats-route://route:tok%2Fen@n1:6222"},
		{" nats-route://10.0.0.2:6222 ", "nats-route://route:tok%2Fen@10.0.0.2:6222"},
		{"nats-route://other:pw@n3:6222", "nats-route://route:tok%2Fen@n3:6222"},
		{"n1", ""},
		{"://", ""},
	}
	for _, tt := range tests {
		u, err := routeURL(tt.in, "tok/en")
		got := ""
		if err == nil {
			got = u.String()
		}
		if got != tt.want {
			t.Errorf("routeURL(%q) = %q (%v), want %q", tt.in, got, err, tt.want)
		}
	}
	if got := SplitRoutes(" a:1,, b:2 ,"); len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Errorf("SplitRoutes = %q", got)
	}
}

// TestSingleStoreRefusedAsClusterNode starts a broker alone, as the
// single-broker compose file does, gives it a stream, and starts it again
// on the same data folder as a cluster node: that is refused with a reason
// instead of serving two diverging copies. A cluster node's own store
// starts again as one.
func TestSingleStoreRefusedAsClusterNode(t *testing.T) {
	dir := t.TempDir()
	opts := Options{DataDir: dir, Listen: "127.0.0.1:0", ServiceToken: "svc", EnrollToken: "enroll", Log: slog.New(slog.DiscardHandler)}
	b, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := b.ConnectService("test")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEPT", Subjects: []string{"kept.>"}}); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	b.Shutdown()

	clustered := opts
	clustered.ServerName = "n1"
	clustered.Cluster = &Cluster{Listen: "127.0.0.1:0", Routes: []string{"127.0.0.1:1"}}
	if b, err := Start(clustered); err == nil {
		b.Shutdown()
		t.Fatal("a single broker's store started as a cluster node")
	} else if !strings.Contains(err.Error(), "single broker") {
		t.Errorf("refusal = %v, want it to say the store is a single broker's", err)
	}
}
