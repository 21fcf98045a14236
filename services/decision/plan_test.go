package decision_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/decision"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
)

// TestReplanOffersOnlyChanges: a rollout's or a device's change re-plans
// the devices, and offers only where the plan changed: a rollout record
// written again and again as its counts move offers nothing; opening a
// wave offers its members; a pin offers the pinned version, as a
// rollback when it is older than the installed one.
func TestReplanOffersOnlyChanges(t *testing.T) {
	c := catalog
	c.Releases = append([]fleet.Release{{Name: "Update 20", Version: "2.0", SHA256: strings.Repeat("2", 64), Size: 20, Command: "sh install.sh", File: "update-2.0.zip"}}, c.Releases...)
	c.Target, c.TargetReason = "1.10.0", "pinned by updates/target"
	e := setup(t, c,
		fleet.Device{ID: "a", Alive: true, Version: "1.0"},
		fleet.Device{ID: "b", Alive: true, Version: "1.0"},
		fleet.Device{ID: "s", Alive: true, Version: "1.0"},
		fleet.Device{ID: "current", Alive: true, Version: "1.10.0"},
	)
	got := map[string]string{}
	for len(got) < 3 {
		o := e.next(t)
		got[o.device] = o.Version
	}
	if got["a"] != "1.10.0" || got["b"] != "1.10.0" || got["s"] != "1.10.0" {
		t.Fatalf("the catalog's pass offered %v, want 1.10.0 to a, b and s", got)
	}

	ctx := context.Background()
	r, err := fleet.NewRollout(fleet.RolloutSpec{ID: "two", Version: "2.0", Waves: []fleet.Wave{{Percent: 50}, {Percent: 100}}}, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r.Members = map[string]fleet.Member{"a": {Wave: 0, From: "1.0"}, "s": {Wave: 1, From: "1.0"}}
	if err := e.store.CreateRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	update := func(fn func(r *fleet.Rollout)) {
		t.Helper()
		if _, err := e.store.UpdateRollout(ctx, "two", func(r *fleet.Rollout) error { fn(r); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		update(func(r *fleet.Rollout) {
			r.Waves[0].Counts = fleet.WaveCounts{Devices: 1, InProgress: i % 2, Waiting: 1 - i%2}
			r.Samples = append(r.Samples, fleet.Sample{Time: time.Now(), WaveCounts: r.Waves[0].Counts})
		})
	}
	update(func(r *fleet.Rollout) { r.Wave = 1 })
	// The rollout's changes are planned in order: once s has its offer,
	// every offer the changes before made is in.
	var before []offer
	for {
		o := e.next(t)
		if o.device == "s" {
			if o.Version != "2.0" || o.Rollback {
				t.Errorf("s offered %s (rollback %v), want 2.0", o.Version, o.Rollback)
			}
			break
		}
		before = append(before, o)
	}
	if len(before) != 1 || before[0].device != "a" || before[0].Version != "2.0" {
		t.Errorf("offers before the second wave opened: %+v, want one, 2.0 to a", before)
	}

	pin := func(id, version string) {
		t.Helper()
		if _, err := e.store.UpdateDevice(ctx, id, func(d *fleet.Device) error {
			d.Pin = &fleet.Pin{Version: version}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	pin("b", "1.9")
	if o := e.next(t); o.device != "b" || o.Version != "1.9.0" || o.Rollback {
		t.Errorf("offer %s to %s (rollback %v), want 1.9.0 to b", o.Version, o.device, o.Rollback)
	}
	pin("current", "1.9.0")
	if o := e.next(t); o.device != "current" || o.Version != "1.9.0" || !o.Rollback {
		t.Errorf("offer %s to %s (rollback %v), want the rollback to 1.9.0 to current", o.Version, o.device, o.Rollback)
	}
	// A record written again with the same pin offers nothing more: the
	// device changes are planned in order, so b's next offer comes
	// first.
	pin("current", "1.9.0")
	pin("b", "1.10")
	if o := e.next(t); o.device != "b" || o.Version != "1.10.0" {
		t.Errorf("offer %s to %s, want 1.10.0 to b", o.Version, o.device)
	}
	// A report still offers the plan: the device may have missed it.
	e.report(t, "current", "1.10.0")
	if o := e.next(t); o.device != "current" || !o.Rollback {
		t.Errorf("offer %s to %s (rollback %v), want the rollback to current, for its report", o.Version, o.device, o.Rollback)
	}
}

// TestRetryWaitsForWindow: a failed install whose retry falls due while
// the device's maintenance window is closed is tried again when the
// window opens.
func TestRetryWaitsForWindow(t *testing.T) {
	var clock atomic.Int64 // the windows' time, in Unix nanoseconds
	at := func(day, hour int) { clock.Store(time.Date(2026, 1, day, hour, 30, 0, 0, time.UTC).UnixNano()) }
	at(5, 2)
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	policy := decision.RetryPolicy{First: 50 * time.Millisecond, Last: time.Second, Tries: 5}
	plant := fleet.Group{Name: "plant", Selector: fleet.Selector{Match: fleet.Labels{"site": "plant"}}, Window: &fleet.Window{Start: "02:00", End: "04:00"}}
	e := setupAt(t, policy, now, []fleet.Group{plant}, catalog, fleet.Device{ID: "kiosk", Alive: true, Version: "1.0", Labels: fleet.Labels{"site": "plant"}})
	o := e.nextTo(t, "kiosk") // inside the window
	at(5, 5)                  // the window closes
	e.fail(t, "kiosk", "1.10.0", o.ID)
	var next time.Time
	natstest.Eventually(t, 10*time.Second, func() error {
		d := e.record(t, "kiosk")
		if d.Retries == nil || d.Retries.Next.IsZero() {
			return fmt.Errorf("retries %+v, want a try planned", d.Retries)
		}
		next = d.Retries.Next
		if time.Now().Before(next.Add(200 * time.Millisecond)) {
			return fmt.Errorf("the try is due at %v", next)
		}
		return nil
	})
	select {
	case m := <-e.offers:
		t.Fatalf("offer %s outside the window", e.decode(t, m).Version)
	default:
	}
	at(6, 2) // the window opens again
	if o := e.nextTo(t, "kiosk"); o.Version != "1.10.0" || !o.Retry {
		t.Errorf("offer %s (retry %v), want 1.10.0 tried again", o.Version, o.Retry)
	}
}
