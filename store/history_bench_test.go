package store_test

import (
	"context"
	"fmt"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/thinfleet/thinfleet/fleet"
)

// BenchmarkEventsNewest times what GET /api/v1/history?limit=50 asks of
// the store: the newest 50 events of a history of 20,000, all of them
// and one device's.
func BenchmarkEventsNewest(b *testing.B) {
	const total, devices = 20000, 100
	s := openStore(b)
	ctx := context.Background()
	var g errgroup.Group
	g.SetLimit(32)
	for i := range total {
		g.Go(func() error {
			e := fleet.Event{Device: fmt.Sprintf("dev-%d", i%devices), Event: fleet.EventConnected}
			return s.AppendEvent(ctx, e, "")
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	for _, f := range []fleet.EventFilter{{Limit: 50}, {Device: "dev-7", Limit: 50}} {
		name := "all"
		if f.Device != "" {
			name = "device"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				evs, err := s.Events(ctx, f)
				if err != nil || len(evs) != 50 {
					b.Fatalf("Events(%+v) = %d events, %v; want 50", f, len(evs), err)
				}
			}
		})
	}
}
