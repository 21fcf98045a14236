package decision_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/decision"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/wire"
)

// fail records in device id's record that its install of version, taken
// from offer, failed, as inventory does with the agent's report.
func (e env) fail(t *testing.T, id, version, offer string) time.Time {
	t.Helper()
	at := time.Now().UTC()
	_, err := e.store.UpdateDevice(context.Background(), id, func(d *fleet.Device) error {
		d.Install = &fleet.Install{OfferID: offer, Version: version, State: wire.StateFailed, Detail: "command exited with 3", Started: at.Add(-time.Millisecond), Updated: at}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// nextTo returns the next offer to device id, failing the test if
// another device than "sentinel" is offered something first.
func (e env) nextTo(t *testing.T, id string) offer {
	t.Helper()
	for {
		o := e.next(t)
		if o.device == id {
			return o
		}
		if o.device != "sentinel" {
			t.Fatalf("offer %s to %s, want one to %s", o.Version, o.device, id)
		}
	}
}

// passes returns the offers, other than to sentinel (alive and below
// c's target), of one whole pass over the devices made after it is
// called. It writes catalog c and waits for the sentinel's offer of a
// pass begun since, then writes c again and waits for the sentinel's
// offer of the pass after: passes publish one after the other, so every
// offer of the first is in by then. (It may return some of the second's
// too.) The sentinel must be stored before the service starts: a device
// the service learns of later may be offered outside a pass.
func (e env) passes(t *testing.T, c fleet.Catalog, sentinel string) []offer {
	t.Helper()
	var got []offer
	first := time.Now()
	since := first
	for range 2 {
		e.putCatalog(t, c)
		for {
			o := e.next(t)
			switch {
			case o.Time.Before(first):
				continue // of a pass before
			case o.device != sentinel:
				got = append(got, o)
				continue
			case o.Time.Before(since):
				continue // the sentinel's offer of the first pass
			}
			break
		}
		since = time.Now()
	}
	return got
}

func (e env) record(t *testing.T, id string) fleet.Device {
	t.Helper()
	d, err := natstest.Device(e.store, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRetryFailedInstall: with no operator, a failed install is offered
// again, marked as a retry, after pauses that double; the fifth failure
// holds the device back, which stops the offers and says why; an
// operator's offer again starts afresh, and so does a new release. The
// count lives in the device record: a restart of the service in the
// middle carries on from it.
func TestRetryFailedInstall(t *testing.T) {
	policy := decision.RetryPolicy{First: 100 * time.Millisecond, Last: time.Second, Tries: 5}
	dev := fleet.Device{ID: "kiosk", Alive: true, Version: "1.0"}
	e := setupWith(t, policy, catalog, dev, fleet.Device{ID: "sentinel", Alive: true, Version: "1.0"})
	target, _ := catalog.TargetRelease()

	o := e.nextTo(t, "kiosk") // the catalog at start
	if o.Retry {
		t.Error("the first offer is marked as a retry")
	}
	for failure := 1; failure <= 5; failure++ {
		at := e.fail(t, "kiosk", "1.10.0", o.ID)
		if failure == 3 {
			// The service restarts with the third failure unseen.
			e.stop()
			e.stop = e.start(t)
		}
		if failure == 5 {
			break
		}
		// Counted in the record, the next try planned from the
		// failure's time, each pause twice the one before.
		var rs fleet.Retries
		natstest.Eventually(t, 10*time.Second, func() error {
			d := e.record(t, "kiosk")
			if d.Retries == nil || d.Retries.Failures != failure {
				return fmt.Errorf("retries %+v, want %d failures", d.Retries, failure)
			}
			rs = *d.Retries
			return nil
		})
		want := policy.First << (failure - 1)
		if got := rs.Next.Sub(at); got != want || rs.HeldBack || !rs.For(target) {
			t.Errorf("after failure %d: next try %v after it, held back %v; want %v, not held back", failure, got, rs.HeldBack, want)
		}
		o = e.nextTo(t, "kiosk")
		if !o.Retry || o.Version != "1.10.0" {
			t.Errorf("retry %d: offer %s retry=%v, want 1.10.0 as a retry", failure, o.Version, o.Retry)
		}
	}

	// Held back: the record says so, and so does the history.
	natstest.Eventually(t, 10*time.Second, func() error {
		d := e.record(t, "kiosk")
		if d.Retries == nil || !d.Retries.HeldBack || d.Retries.Failures != 5 {
			return fmt.Errorf("retries %+v, want held back after 5", d.Retries)
		}
		h := d.HoldBack(target, time.Now())
		if want := "held back after 5 failed installs of 1.10.0"; h.Reason != want || !h.HeldBack {
			return fmt.Errorf("hold %+v, want %q", h, want)
		}
		for _, ev := range natstest.Events(t, e.store, "kiosk") {
			if ev.Event == fleet.EventHeldBack && ev.Detail == "held back after 5 failed installs of 1.10.0" {
				return nil
			}
		}
		return fmt.Errorf("no held_back event in %+v", natstest.Events(t, e.store, "kiosk"))
	})
	// Nothing more is offered to it, not even when the catalog changes.
	if got := e.passes(t, catalog, "sentinel"); len(got) != 0 {
		t.Errorf("offers to a device held back: %+v", got)
	}

	// An operator offers it again (the web server does this and sends
	// the offer): the count starts afresh, so the next failure is tried
	// again.
	_, err := e.store.UpdateDevice(context.Background(), "kiosk", func(d *fleet.Device) error {
		d.OfferedAgain(target)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.fail(t, "kiosk", "1.10.0", "operator-offer")
	if o := e.nextTo(t, "kiosk"); !o.Retry || o.Version != "1.10.0" {
		t.Errorf("after offer again: offer %s retry=%v, want 1.10.0 as a retry", o.Version, o.Retry)
	}
	if d := e.record(t, "kiosk"); d.Retries == nil || d.Retries.Failures != 1 || d.Retries.HeldBack {
		t.Errorf("after offer again and one failure: retries %+v, want 1 failure", d.Retries)
	}

	// A new release is offered at once, whatever failed before.
	next := catalog
	next.Releases = append([]fleet.Release{{Name: "Update 11", Version: "1.11.0", SHA256: sum[:63] + "1", Size: 1, Command: "sh install.sh", File: "u11.zip"}}, catalog.Releases...)
	next.Target = "1.11.0"
	e.putCatalog(t, next)
	got := map[string]bool{}
	for len(got) < 2 {
		o := e.next(t)
		if o.Version != "1.11.0" {
			continue // a retry of 1.10.0 that was due
		}
		got[o.device] = true
		if o.device == "kiosk" && o.Retry {
			t.Error("the new release is offered as a retry")
		}
	}
}

// TestRetryWhenBack: a retry that falls due while the device is away is
// offered when it is back.
func TestRetryWhenBack(t *testing.T) {
	policy := decision.RetryPolicy{First: 100 * time.Millisecond, Tries: 5}
	dev := fleet.Device{ID: "kiosk", Alive: true, Version: "1.0", LastSeen: time.Now().UTC()}
	e := setupWith(t, policy, catalog, dev)
	o := e.nextTo(t, "kiosk")
	dev.Alive = false
	e.putDevice(t, dev)
	e.fail(t, "kiosk", "1.10.0", o.ID)
	natstest.Eventually(t, 10*time.Second, func() error {
		if rs := e.record(t, "kiosk").Retries; rs == nil || rs.Failures != 1 || time.Now().Before(rs.Next) {
			return fmt.Errorf("retries %+v: want one failure, its retry due", rs)
		}
		return nil
	})
	d := e.record(t, "kiosk")
	d.Alive, d.LastSeen = true, time.Now().UTC()
	e.putDevice(t, d)
	if o := e.nextTo(t, "kiosk"); !o.Retry {
		t.Error("the offer to a device back with a retry due is not a retry")
	}
}

// TestPlatforms: a release that lists platforms is offered only to the
// devices that reported one of them, under the names agents report
// (aarch64 is arm64); a device whose platform is not known yet is offered
// it once it reports a matching one.
func TestPlatforms(t *testing.T) {
	arm := catalog
	arm.Releases = []fleet.Release{catalog.Releases[0]}
	arm.Releases[0].Platforms = []string{"linux/arm64", "linux/arm/v7"}
	hw := func(os, arch string) wire.Hardware { return wire.Hardware{OS: os, Arch: arch} }
	devices := []fleet.Device{
		{ID: "pi4", Alive: true, Version: "1.0", Hardware: hw("linux", "aarch64")},
		{ID: "pi3", Alive: true, Version: "1.0", Hardware: hw("linux", "armv7l")},
		{ID: "pi1", Alive: true, Version: "1.0", Hardware: hw("linux", "armv6l")},
		{ID: "pc", Alive: true, Version: "1.0", Hardware: hw("linux", "x86_64")},
		{ID: "mac", Alive: true, Version: "1.0", Hardware: hw("darwin", "arm64")},
		{ID: "unknown", Alive: true, Version: "1.0"},
	}
	// Stored before the service starts: a device that appears with a
	// platform later is offered on that change, outside any pass.
	e := setup(t, arm, append(devices, fleet.Device{ID: "sentinel", Alive: true, Version: "1.0", Hardware: hw("Linux", "arm64")})...)
	want := map[string]bool{"pi4": true, "pi3": true}
	got := map[string]bool{}
	for _, o := range e.passes(t, arm, "sentinel") {
		got[o.device] = true
	}
	for _, d := range devices {
		if got[d.ID] != want[d.ID] {
			t.Errorf("%s (%s/%s) offered = %v, want %v", d.ID, d.Hardware.OS, d.Hardware.Arch, got[d.ID], want[d.ID])
		}
	}
	// The one not known reports its hardware: it is offered the release.
	d := devices[5]
	d.Hardware = hw("linux", "arm64")
	e.putDevice(t, d)
	for o := e.next(t); o.device != "unknown"; o = e.next(t) {
		if !want[o.device] && o.device != "sentinel" {
			t.Errorf("offer to %s", o.device) // the second pass's rest may come first
		}
	}
	// Why the others are held back, as the dashboard says it.
	r, _ := arm.TargetRelease()
	for _, c := range []struct {
		d    fleet.Device
		want string
	}{
		{devices[3], "1.10.0 is for linux/arm64, linux/arm/v7, not linux/amd64"},
		{fleet.Device{Version: "1.0"}, "1.10.0 is for linux/arm64, linux/arm/v7; the device has not reported its platform"},
	} {
		if h := c.d.HoldBack(r, time.Now()); h.Reason != c.want {
			t.Errorf("%s: hold %q, want %q", c.d.ID, h.Reason, c.want)
		}
	}
}
