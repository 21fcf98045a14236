package decision_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/decision"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// benchEnv is a decision service on a real broker that writes every
// JetStream append to disk before acknowledging it (as the production
// broker does), with n alive devices below the target in its store and
// a subscriber counting the offers.
type benchEnv struct {
	store *store.Store
	agent *nats.Conn
	// offers counts the offers received; arrived is called with each.
	offers  atomic.Int64
	mu      sync.Mutex
	arrived func(time.Time)
}

func newBenchEnv(b *testing.B, n int) *benchEnv {
	b.Helper()
	srv := natstest.Start(b, natstest.Options{SyncAlways: true})
	e := &benchEnv{store: srv.Store(), agent: srv.Conn("agent")}
	sub, err := e.agent.Subscribe(wire.AllOffers, func(*nats.Msg) {
		now := time.Now()
		e.offers.Add(1)
		e.mu.Lock()
		if e.arrived != nil {
			e.arrived(now)
		}
		e.mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		b.Fatal(err)
	}
	if err := e.agent.Flush(); err != nil {
		b.Fatal(err)
	}
	putDevices(b, e.store, n)
	e.put(b, catalog)
	s, err := decision.New(decision.Options{
		Log: slog.New(slog.DiscardHandler), Store: e.store, Conn: srv.Conn("decision"),
		PublicURL: "http://updates.example:8080/", LinkKey: linkKey,
	})
	if err != nil {
		b.Fatal(err)
	}
	natstest.Run(b, s.Run)
	// The catalog at start is offered to every device: once those offers
	// are in, the service has its view of the fleet.
	e.wait(b, int64(n), 5*time.Minute)
	e.recorded(b, uint64(n), 5*time.Minute)
	return e
}

// recorded waits until the history holds n events.
func (e *benchEnv) recorded(b *testing.B, n uint64, timeout time.Duration) {
	b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		st, err := e.store.JetStream().Stream(ctx, store.HistoryStream)
		if err != nil {
			b.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.State.Msgs >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d history events of %d after %v", info.State.Msgs, n, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// putDevices writes n alive devices on version 1.0 into st, as
// inventory and presence would.
func putDevices(b *testing.B, st *store.Store, n int) {
	b.Helper()
	ids := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range ids {
				id := fmt.Sprintf("dev-%05d", i)
				_, err := st.UpdateDevice(context.Background(), id, func(d *fleet.Device) error {
					*d = fleet.Device{
						ID: id, Hostname: id, Alive: true, Version: "1.0", LastSeen: time.Now().UTC(),
						Hardware: wire.Hardware{Hostname: id, OS: "linux", Arch: "x86_64", CPUCores: 2, MemoryTotal: 4 << 30},
					}
					return nil
				})
				if err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
}

func (e *benchEnv) put(b *testing.B, c fleet.Catalog) {
	b.Helper()
	c.Updated = time.Now().UTC()
	if err := e.store.PutCatalog(context.Background(), c); err != nil {
		b.Fatal(err)
	}
}

// wait waits until n offers have been received in all.
func (e *benchEnv) wait(b *testing.B, n int64, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for e.offers.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d offers of %d after %v", e.offers.Load(), n, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkFanOut times a catalog change reaching every device: from the
// catalog written to the store (the catalog service accepting a zip) to
// each of N alive devices below the target holding its offer. It reports
// the time to the last offer as ns/op, the 50th and 99th percentiles of
// the offers' arrival times, and the time until the history holds every
// offer (history-s; the next change waits for it, so that each is timed
// alone). BENCHMARKS.md keeps the figures.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			e := newBenchEnv(b, n)
			var lat []time.Duration
			var acked, first, p50, p99, history []float64
			b.ResetTimer()
			for i := range b.N {
				lat = lat[:0]
				start := time.Now()
				e.mu.Lock()
				e.arrived = func(t time.Time) { lat = append(lat, t.Sub(start)) }
				e.mu.Unlock()
				e.put(b, catalog)
				acked = append(acked, float64(time.Since(start).Microseconds())/1000)
				e.wait(b, int64(n*(i+2)), 5*time.Minute)
				// The history catches up before the next change, so each
				// change is timed on its own.
				b.StopTimer()
				e.recorded(b, uint64(n*(i+2)), 5*time.Minute)
				history = append(history, time.Since(start).Seconds())
				b.StartTimer()
				e.mu.Lock()
				e.arrived = nil
				slices.Sort(lat)
				first = append(first, lat[0].Seconds()*1000)
				p50 = append(p50, lat[len(lat)/2].Seconds()*1000)
				p99 = append(p99, lat[len(lat)*99/100].Seconds()*1000)
				e.mu.Unlock()
			}
			b.StopTimer()
			b.ReportMetric(mean(acked), "put-ms")
			b.ReportMetric(mean(first), "first-ms")
			b.ReportMetric(mean(p50), "p50-ms")
			b.ReportMetric(mean(p99), "p99-ms")
			b.ReportMetric(mean(history), "history-s")
		})
	}
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// BenchmarkOfferOnReport times one decision end to end: a device reports
// an old version (stored in the agent stream as the intake does) and is
// offered the target, with 10,000 devices in the store.
func BenchmarkOfferOnReport(b *testing.B) {
	e := newBenchEnv(b, 10000)
	data, _ := json.Marshal(wire.VersionInstalled{Version: "1.0"})
	b.ResetTimer()
	for i := range b.N {
		want := e.offers.Load() + 1
		natstest.Publish(b, e.agent, wire.VersionInstalledSubject(fmt.Sprintf("dev-%05d", i%10000)), data)
		e.wait(b, want, time.Minute)
	}
}
