package presence_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// connectMany opens one connection per id, named with it, as agents do.
func connectMany(t testing.TB, srv *natstest.Server, prefix string, n int) ([]string, []*nats.Conn) {
	ids := make([]string, n)
	conns := make([]*nats.Conn, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%04d", prefix, i)
		conns[i] = srv.Conn(ids[i])
	}
	return ids, conns
}

// beatAll sends one heartbeat of each connection's device (each
// connection's flusher sends it on).
func beatAll(ids []string, conns []*nats.Conn, interval time.Duration) {
	data := fmt.Appendf(nil, `{"interval_ms":%d}`, interval.Milliseconds())
	for i, nc := range conns {
		_ = nc.Publish(wire.HeartbeatSubject(ids[i]), data)
	}
}

// waitAll waits until every device of ids is recorded alive (or
// notAlive), and returns the records.
func waitAll(t testing.TB, st *store.Store, ids []string, alive bool, timeout time.Duration) map[string]fleet.Device {
	t.Helper()
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var got map[string]fleet.Device
	deadline := time.Now().Add(timeout)
	for {
		err := func() error {
			ds, err := st.Devices(context.Background())
			if err != nil {
				return err
			}
			got = map[string]fleet.Device{}
			wrong := 0
			for _, d := range ds {
				if want[d.ID] {
					got[d.ID] = d
					if d.Alive != alive {
						wrong++
					}
				}
			}
			if missing := len(ids) - len(got); missing > 0 || wrong > 0 {
				return fmt.Errorf("%d of %d not recorded yet, %d with alive != %v", missing, len(ids), wrong, alive)
			}
			return nil
		}()
		if err == nil {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond) // reading every record is costly
	}
}

// TestMassDisconnect: hundreds of devices close their connections at
// once, and hundreds more go silent with their connections open. Every one
// of them turns notAlive, for the right reason, with one event each, and
// the devices that stay are never touched.
func TestMassDisconnect(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 300 connections")
	}
	e := setup(t)
	e.start(t, true)
	const n = 100
	gone, goneConns := connectMany(t, e.srv, "gone", n)
	silent, silentConns := connectMany(t, e.srv, "silent", n)
	stay, stayConns := connectMany(t, e.srv, "stay", n)

	const interval = time.Second
	var quit sync.WaitGroup
	stopSilent, stopStay := make(chan struct{}), make(chan struct{})
	keepBeating := func(ids []string, conns []*nats.Conn, stop chan struct{}) {
		quit.Add(1)
		go func() {
			defer quit.Done()
			tick := time.NewTicker(interval / 4)
			defer tick.Stop()
			for {
				beatAll(ids, conns, interval)
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	keepBeating(silent, silentConns, stopSilent)
	keepBeating(stay, stayConns, stopStay)
	defer func() { close(stopStay); quit.Wait() }()
	beatAll(gone, goneConns, time.Minute)
	waitAll(t, e.store, gone, true, 30*time.Second)
	waitAll(t, e.store, silent, true, 30*time.Second)
	waitAll(t, e.store, stay, true, 30*time.Second)

	// At once: the first group closes its connections, the second stops
	// heartbeating.
	var wg sync.WaitGroup
	for _, nc := range goneConns {
		wg.Add(1)
		go func() { defer wg.Done(); nc.Close() }()
	}
	close(stopSilent)
	wg.Wait()

	goneRecs := waitAll(t, e.store, gone, false, 30*time.Second)
	silentRecs := waitAll(t, e.store, silent, false, 30*time.Second)
	waitAll(t, e.store, stay, true, time.Second)
	// Every event, read at once, by device, once each flip's event is in:
	// presence appends it right after the record.
	byDevice := map[string][]string{}
	natstest.Eventually(t, 30*time.Second, func() error {
		all, err := e.store.Events(context.Background(), fleet.EventFilter{})
		if err != nil {
			return err
		}
		clear(byDevice)
		for _, ev := range slices.Backward(all) {
			byDevice[ev.Device] = append(byDevice[ev.Device], fmt.Sprintf("%s(%s)", ev.Event, ev.Detail))
		}
		for _, id := range append(slices.Clone(gone), silent...) {
			if evs := byDevice[id]; len(evs) == 0 || !strings.HasPrefix(evs[len(evs)-1], "disconnected") {
				return fmt.Errorf("%s: events %q", id, evs)
			}
		}
		return nil
	})
	events := func(_ *testing.T, _ *store.Store, id string) string { return strings.Join(byDevice[id], " ") }
	for id, d := range goneRecs {
		if d.LastSeen.IsZero() {
			t.Errorf("%s: LastSeen lost", id)
		}
		if got := events(t, e.store, id); !strings.HasPrefix(got, "connected(heartbeat every 1m0s) disconnected(connection closed") || strings.Count(got, "disconnected") != 1 {
			t.Errorf("%s: events %q", id, got)
		}
	}
	for id := range silentRecs {
		if got, want := events(t, e.store, id), "connected(heartbeat every 1s) disconnected(heartbeat missed 3×1s)"; got != want {
			t.Errorf("%s: events %q, want %q", id, got, want)
		}
	}
	for _, id := range stay {
		if got := events(t, e.store, id); got != "connected(heartbeat every 1s)" {
			t.Errorf("%s: events %q", id, got)
		}
	}
}
