package presence_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/services/presence"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

type env struct {
	srv   *natstest.Server
	store *store.Store
	agent *nats.Conn // sends heartbeats for any id
}

func setup(t *testing.T) env {
	srv := natstest.Start(t, natstest.Options{Accounts: true})
	return env{srv: srv, store: srv.Store(), agent: srv.Conn("agents")}
}

// start runs a presence service; withSys gives it the broker's events.
func (e env) start(t *testing.T, withSys bool) (stop func()) {
	opts := presence.Options{
		Log: natstest.Logger(t), Metrics: natstest.Metrics, Store: e.store, Conn: e.srv.Conn("presence"),
		Account: natstest.AppAccount, SeenEvery: 100 * time.Millisecond,
	}
	if withSys {
		opts.SysConn = e.srv.SysConn()
	}
	s, err := presence.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return natstest.Run(t, s.Run)
}

func beat(t *testing.T, nc *nats.Conn, id string, interval time.Duration) {
	t.Helper()
	data, _ := json.Marshal(wire.Heartbeat{IntervalMS: interval.Milliseconds()})
	if err := nc.Publish(wire.HeartbeatSubject(id), data); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// beating sends a heartbeat announcing interval every interval/4 until
// stop, which returns when the last one was sent.
func beating(t *testing.T, nc *nats.Conn, id string, interval time.Duration) (stop func() time.Time) {
	data, _ := json.Marshal(wire.Heartbeat{IntervalMS: interval.Milliseconds()})
	quit, done := make(chan struct{}), make(chan time.Time)
	go func() {
		tick := time.NewTicker(interval / 4)
		defer tick.Stop()
		var last time.Time
		for {
			_ = nc.Publish(wire.HeartbeatSubject(id), data)
			_ = nc.Flush()
			last = time.Now()
			select {
			case <-quit:
				done <- last
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	var last time.Time
	stop = func() time.Time {
		once.Do(func() { close(quit); last = <-done })
		return last
	}
	t.Cleanup(func() { stop() })
	return stop
}

// beatUntilAlive sends heartbeats until the record of id says alive: a
// heartbeat sent before presence subscribed is lost, as it should be.
func (e env) beatUntilAlive(t *testing.T, nc *nats.Conn, id string, interval time.Duration) fleet.Device {
	t.Helper()
	var d fleet.Device
	natstest.Eventually(t, 10*time.Second, func() error {
		beat(t, nc, id, interval)
		var err error
		if d, err = natstest.Device(e.store, id); err != nil {
			return err
		}
		if !d.Alive {
			return fmt.Errorf("%s: not alive", id)
		}
		return nil
	})
	return d
}

// waitAlive waits until the record of id says alive.
func (e env) waitAlive(t *testing.T, id string, alive bool) fleet.Device {
	t.Helper()
	var d fleet.Device
	natstest.Eventually(t, 10*time.Second, func() error {
		var err error
		if d, err = natstest.Device(e.store, id); err != nil {
			return err
		}
		if d.Alive != alive {
			return fmt.Errorf("%s: alive = %v, want %v", id, d.Alive, alive)
		}
		return nil
	})
	return d
}

func (e env) put(t *testing.T, d fleet.Device) {
	t.Helper()
	_, err := e.store.UpdateDevice(natstest.Context(t), d.ID, func(r *fleet.Device) error {
		*r = d
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// events are id's history events. Presence appends a flip's event right
// after it writes the record, so they are read once the newest agrees
// with the record (or there are none).
func events(t *testing.T, st *store.Store, id string) string {
	t.Helper()
	var out []string
	natstest.Eventually(t, 10*time.Second, func() error {
		evs := natstest.Events(t, st, id)
		out = out[:0]
		for _, e := range evs {
			out = append(out, fmt.Sprintf("%s(%s)", e.Event, e.Detail))
		}
		d, err := natstest.Device(st, id)
		if err != nil || len(evs) == 0 {
			return nil
		}
		newest := evs[len(evs)-1] // oldest first
		if (newest.Event == fleet.EventConnected) != d.Alive {
			return fmt.Errorf("%s: record alive=%v, newest event %s", id, d.Alive, newest.Event)
		}
		return nil
	})
	return strings.Join(out, " ")
}

func TestHeartbeatsAndSilence(t *testing.T) {
	e := setup(t)
	e.start(t, false)
	const interval = 200 * time.Millisecond
	stop := beating(t, e.agent, "pos-1", interval)
	d := e.waitAlive(t, "pos-1", true)
	if d.HeartbeatMS != interval.Milliseconds() || d.LastSeen.IsZero() {
		t.Errorf("alive record: %+v", d)
	}
	// Heartbeats go on for a while: it stays alive (no flapping shows in
	// the events below).
	until := time.Now().Add(5 * interval)
	natstest.Eventually(t, 10*time.Second, func() error {
		if time.Now().Before(until) {
			return fmt.Errorf("still beating")
		}
		return nil
	})
	last := stop()
	d = e.waitAlive(t, "pos-1", false)
	if waited := time.Since(last); waited < 3*interval {
		t.Errorf("notAlive %v after the last heartbeat, before three intervals (%v)", waited, 3*interval)
	}
	if d.LastSeen.Before(last.Add(-interval)) || d.LastSeen.After(last.Add(interval)) {
		t.Errorf("LastSeen %v, last heartbeat sent %v", d.LastSeen, last)
	}
	if got, want := events(t, e.store, "pos-1"), "connected(heartbeat every 200ms) disconnected(heartbeat missed 3×200ms)"; got != want {
		t.Errorf("events = %q, want %q", got, want)
	}
	// And back.
	beat(t, e.agent, "pos-1", interval)
	e.waitAlive(t, "pos-1", true)
}

func TestDisconnect(t *testing.T) {
	e := setup(t)
	e.start(t, true)
	const long = time.Minute // silence alone would take three minutes

	dev := e.srv.Conn("dev-7")
	e.beatUntilAlive(t, dev, "dev-7", long)

	// dev-8 reconnects on a new connection; the old one closes after.
	old := e.srv.Conn("dev-8")
	e.beatUntilAlive(t, old, "dev-8", long)
	renewed := e.srv.Conn("dev-8")
	beat(t, renewed, "dev-8", long)

	// A service's connection has a name that could be an id.
	e.srv.Conn("thinfleet-web").Close()

	start := time.Now()
	old.Close()
	dev.Close()
	d := e.waitAlive(t, "dev-7", false)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("notAlive %v after the connection closed", took)
	}
	if got := events(t, e.store, "dev-7"); !strings.HasPrefix(got, "connected(heartbeat every 1m0s) disconnected(connection closed") {
		t.Errorf("events = %q", got)
	}
	if d.LastSeen.IsZero() {
		t.Error("LastSeen lost")
	}
	// dev-7's close was handled, so dev-8's old one, closed before, was.
	if d, _ := natstest.Device(e.store, "dev-8"); !d.Alive {
		t.Error("dev-8 notAlive after its replaced connection closed")
	}
	if _, err := natstest.Device(e.store, "thinfleet-web"); err == nil {
		t.Error("a record for a service's connection")
	}
	renewed.Close()
	e.waitAlive(t, "dev-8", false)
}

// TestFlipWritesWithoutReading: presence holds the records it watches, so
// a device whose connection closes costs one write of its record and no
// read (a thousand closing at once are a thousand writes); and what
// another service wrote to the record just before is kept.
func TestFlipWritesWithoutReading(t *testing.T) {
	e := setup(t)
	e.start(t, true)
	const long = time.Minute
	quiet := e.srv.Conn("quiet-1")
	e.beatUntilAlive(t, quiet, "quiet-1", long)
	busy := e.srv.Conn("busy-1")
	e.beatUntilAlive(t, busy, "busy-1", long)

	var reads atomic.Int64
	counter := e.srv.Conn("read-counter")
	if _, err := counter.Subscribe("$JS.API.DIRECT.GET.KV_"+store.DevicesBucket+".>", func(*nats.Msg) { reads.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := counter.Flush(); err != nil {
		t.Fatal(err)
	}
	quiet.Close()
	natstest.Eventually(t, 10*time.Second, func() error {
		evs := natstest.Events(t, e.store, "quiet-1")
		if len(evs) == 0 || evs[len(evs)-1].Event != fleet.EventDisconnected {
			return fmt.Errorf("quiet-1: no disconnected event yet")
		}
		return nil
	})
	if n := reads.Load(); n != 0 {
		t.Errorf("presence read device records %d times to record a closed connection, want 0", n)
	}

	// Another service writes busy-1 (inventory, decision) as it goes.
	if _, err := e.store.UpdateDevice(context.Background(), "busy-1", func(d *fleet.Device) error {
		d.Version = "2.0"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	busy.Close()
	d := e.waitAlive(t, "busy-1", false)
	if d.Version != "2.0" {
		t.Errorf("busy-1 = %+v: the other service's version 2.0 was lost", d)
	}
	if got := events(t, e.store, "busy-1"); !strings.HasPrefix(got, "connected(heartbeat every 1m0s) disconnected(connection closed") || strings.Count(got, "disconnected") != 1 {
		t.Errorf("busy-1 events = %q", got)
	}
}

func TestRestart(t *testing.T) {
	e := setup(t)
	const interval = 200 * time.Millisecond
	seen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.put(t, fleet.Device{ID: "ghost", Alive: true, HeartbeatMS: interval.Milliseconds(), LastSeen: seen, Version: "1.0"})
	e.put(t, fleet.Device{ID: "live", Alive: true, HeartbeatMS: interval.Milliseconds(), LastSeen: seen})
	e.put(t, fleet.Device{ID: "off", Alive: false, LastSeen: seen})
	beating(t, e.agent, "live", interval)

	stop := e.start(t, false)
	start := time.Now()
	ghost := e.waitAlive(t, "ghost", false)
	if took := time.Since(start); took < 3*interval {
		t.Errorf("ghost notAlive %v after start, before three intervals", took)
	}
	if !ghost.LastSeen.Equal(seen) || ghost.Version != "1.0" {
		t.Errorf("ghost record changed beyond Alive: %+v", ghost)
	}
	if got := events(t, e.store, "ghost"); got != "disconnected(heartbeat missed 3×200ms)" {
		t.Errorf("ghost events = %q", got)
	}

	// presence restarts while live keeps beating: no flip, no event.
	stop()
	e.start(t, false)
	e.waitAlive(t, "ghost", false)
	e.beatUntilAlive(t, e.agent, "sync", interval) // heartbeats are handled in order
	if d, _ := natstest.Device(e.store, "live"); !d.Alive {
		t.Error("live went notAlive")
	}
	if got := events(t, e.store, "live"); got != "" {
		t.Errorf("live events = %q, want none", got)
	}
	if d, _ := natstest.Device(e.store, "off"); d.Alive || !d.LastSeen.Equal(seen) {
		t.Errorf("off changed: %+v", d)
	}
}

// TestLastSeen: an alive device's last heartbeat is published within a
// SeenEvery, while its record is written at its flips only, not once per
// heartbeat nor every few heartbeats.
func TestLastSeen(t *testing.T) {
	e := setup(t)
	e.start(t, false)
	var mu sync.Mutex
	seen := map[string]time.Time{}
	sub, err := presence.FollowSeen(e.srv.Conn("web"), natstest.Logger(t), natstest.Metrics, func(m map[string]time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for id, at := range m {
			seen[id] = at
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	first := e.beatUntilAlive(t, e.agent, "pos-1", time.Minute)
	for i := range 10 {
		sent := time.Now()
		beat(t, e.agent, "pos-1", time.Minute)
		// Each heartbeat shows in the publications, the record does not
		// move.
		natstest.Eventually(t, 10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if got := seen["pos-1"]; got.Before(sent.Truncate(time.Millisecond)) {
				return fmt.Errorf("heartbeat %d sent at %v: published last seen %v", i, sent, got)
			}
			return nil
		})
	}
	kv, err := e.store.JetStream().KeyValue(natstest.Context(t), store.DevicesBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(natstest.Context(t), "pos-1")
	if err != nil {
		t.Fatal(err)
	}
	var d fleet.Device
	if err := json.Unmarshal(entry.Value(), &d); err != nil {
		t.Fatal(err)
	}
	if !d.LastSeen.Equal(first.LastSeen) || !d.Alive {
		t.Errorf("record written again after its flip: LastSeen %v, at the flip %v", d.LastSeen, first.LastSeen)
	}
}

func TestGarbage(t *testing.T) {
	e := setup(t)
	e.start(t, true)
	type counter struct{ kind, reason string }
	want := map[counter]float64{
		{"agent.heartbeat", "bad_json"}:    3,
		{"agent.heartbeat", "invalid"}:     3,
		{"agent.heartbeat", "too_large"}:   1,
		{"agent.heartbeat", "bad_subject"}: 2,
		{"sys.disconnect", "bad_json"}:     2,
		{"sys.connect", "bad_json"}:        1,
	}
	before := map[counter]float64{}
	for c := range want {
		before[c] = natstest.Dropped(t, c.kind, c.reason)
	}
	random := make([]byte, 1024)
	for i := range random {
		random[i] = byte(rand.IntN(256))
	}
	sys := e.srv.SysConn()
	e.beatUntilAlive(t, e.agent, "ready", time.Minute) // presence listens
	for _, g := range []struct {
		nc      *nats.Conn
		subject string
		data    []byte
	}{
		{e.agent, wire.HeartbeatSubject("pos-1"), random},
		{e.agent, wire.HeartbeatSubject("pos-1"), nil},
		{e.agent, wire.HeartbeatSubject("pos-1"), []byte(`{"interval_ms":"5s"}`)},
		{e.agent, wire.HeartbeatSubject("pos-1"), []byte(`{}`)},
		{e.agent, wire.HeartbeatSubject("pos-1"), []byte(`{"interval_ms":-1}`)},
		{e.agent, wire.HeartbeatSubject("pos-1"), []byte(`{"interval_ms":9223372036854775807}`)},
		{e.agent, wire.HeartbeatSubject("pos-1"), []byte(`{"interval_ms":1000,"pad":"` + strings.Repeat("x", 100<<10) + `"}`)},
		{e.agent, "agent.heartbeat.bad!id", []byte(`{"interval_ms":1000}`)},
		{e.agent, "agent.heartbeat." + strings.Repeat("x", 65), []byte(`{"interval_ms":1000}`)},
		{sys, "$SYS.ACCOUNT.THINFLEET.DISCONNECT", random},
		{sys, "$SYS.ACCOUNT.THINFLEET.DISCONNECT", []byte(`{"client":{"name":42}}`)},
		{sys, "$SYS.ACCOUNT.THINFLEET.DISCONNECT", []byte(`{"client":{"name":"not an id!"}}`)},
		{sys, "$SYS.ACCOUNT.THINFLEET.DISCONNECT", []byte(`{"client":{"name":"never-seen"}}`)},
		{sys, "$SYS.ACCOUNT.THINFLEET.CONNECT", []byte(`{"client":`)},
		{sys, "$SYS.ACCOUNT.THINFLEET.CONNECT", []byte(`{"client":{"name":"` + strings.Repeat("y", 100) + `"}}`)},
	} {
		if err := g.nc.Publish(g.subject, g.data); err != nil {
			t.Fatal(err)
		}
		if err := g.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// A device connects and leaves: both come after the garbage.
	dev := e.srv.Conn("pos-2")
	e.beatUntilAlive(t, dev, "pos-2", time.Minute)
	dev.Close()
	e.waitAlive(t, "pos-2", false)

	for c, n := range want {
		if got := natstest.Dropped(t, c.kind, c.reason) - before[c]; got != n {
			t.Errorf("dropped{%s,%s} grew by %v, want %v", c.kind, c.reason, got, n)
		}
	}
	for _, id := range []string{"pos-1", "never-seen"} {
		if _, err := natstest.Device(e.store, id); err == nil {
			t.Errorf("garbage made a record for %s", id)
		}
	}
}

func TestNew(t *testing.T) {
	e := setup(t)
	nc := e.srv.Conn("x")
	for _, o := range []presence.Options{
		{Conn: nc},
		{Store: e.store},
		{Store: e.store, Conn: nc, Account: "A.B"},
		{Store: e.store, Conn: nc, Account: "*"},
	} {
		if _, err := presence.New(o); err == nil {
			t.Errorf("New(%+v): no error", o)
		}
	}
}

// TestStartChecksWithBroker starts presence over records that say two
// devices are alive, with a heartbeat interval so long that silence would
// take minutes: the one without a connection at the broker turns notAlive
// at once, the connected one stays alive without an event.
func TestStartChecksWithBroker(t *testing.T) {
	e := setup(t)
	const long = time.Minute
	e.put(t, fleet.Device{ID: "gone", Alive: true, HeartbeatMS: long.Milliseconds()})
	e.put(t, fleet.Device{ID: "here", Alive: true, HeartbeatMS: long.Milliseconds()})
	here := e.srv.Conn("here")
	e.start(t, true)
	start := time.Now()
	e.waitAlive(t, "gone", false)
	t.Logf("MEASURED: start to a device without a connection notAlive: %s", time.Since(start).Round(time.Millisecond))
	if got := events(t, e.store, "gone"); got != "disconnected(no connection at the broker)" {
		t.Errorf("gone events = %q", got)
	}
	e.beatUntilAlive(t, here, "here", long)
	if got := events(t, e.store, "here"); got != "" {
		t.Errorf("here events = %q, want none", got)
	}
	// The broker's word on the connection holds after the check: closing
	// it turns the device notAlive at once.
	here.Close()
	e.waitAlive(t, "here", false)
}

// TestDeletedDeviceStaysDeleted deletes the record of a connected device,
// as an operator does: when its connection then closes, presence does not
// write the record back.
func TestDeletedDeviceStaysDeleted(t *testing.T) {
	e := setup(t)
	e.start(t, true)
	dev := e.srv.Conn("gone-1")
	e.beatUntilAlive(t, dev, "gone-1", time.Minute)
	if err := e.store.DeleteDevice(context.Background(), "gone-1", "test"); err != nil {
		t.Fatal(err)
	}
	dev.Close()
	// A device whose close presence handles after gone-1's shows that
	// gone-1's has been handled too.
	other := e.srv.Conn("other-1")
	e.beatUntilAlive(t, other, "other-1", time.Minute)
	other.Close()
	e.waitAlive(t, "other-1", false)
	if d, err := natstest.Device(e.store, "gone-1"); err == nil {
		t.Errorf("a deleted device's record came back: %+v", d)
	}
}
