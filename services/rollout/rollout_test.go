package rollout_test

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
)

var threeWaves = []fleet.Wave{{Name: "canary", Percent: 10}, {Name: "half", Percent: 50}, {Name: "all", Percent: 100}}

// TestCanaryThenHalfThenAll: a rollout of 2.0 to 20 devices offers it to
// the 2 of its canary wave only, although 2.0 is the catalog's target;
// once they run it, to 10; then to every device, and completes. No
// device is ever offered 2.0 before its wave opened.
func TestCanaryThenHalfThenAll(t *testing.T) {
	ds := devices("kiosk", 20, "1.0", nil)
	e := setup(t, catalogOf(release("2.0"), release("1.0")), ds...)
	e.create(t, fleet.Rollout{ID: "canary-13", Version: "2.0", Waves: slices.Clone(threeWaves)})

	r := e.waitRollout(t, "canary-13", state(fleet.RolloutCompleted))
	if len(r.Members) != 20 {
		t.Errorf("%d members, want 20", len(r.Members))
	}
	for i, want := range []int{2, 8, 10} {
		if c := r.Waves[i].Counts; c.Devices != want || c.Succeeded != want {
			t.Errorf("wave %d counts %+v, want %d devices, all succeeded", i, c, want)
		}
		if r.Waves[i].Opened.IsZero() || r.Waves[i].Done.IsZero() {
			t.Errorf("wave %d opened %v, done %v", i, r.Waves[i].Opened, r.Waves[i].Done)
		}
	}
	for i := 1; i < 3; i++ {
		if r.Waves[i].Opened.Before(r.Waves[i-1].Done) {
			t.Errorf("wave %d opened at %v, before wave %d was done at %v", i, r.Waves[i].Opened, i-1, r.Waves[i-1].Done)
		}
	}
	if r.SHA256 != sumOf("2.0") {
		t.Errorf("sha256 %q, want the release's", r.SHA256)
	}
	if r.Reason != "all 3 waves done: 20 of 20 devices run 2.0" {
		t.Errorf("reason %q", r.Reason)
	}
	if n := len(r.Samples); n < 3 || r.Samples[n-1].Succeeded != 20 {
		t.Errorf("samples %+v, want the counts over time ending with 20 succeeded", r.Samples)
	}
	want := map[string]string{}
	for _, d := range ds {
		want[d.ID] = "2.0"
	}
	e.versions(t, want)
	offersInOpenWaves(t, e.sim.received(), r)

	// A device that comes online after the rollout completed gets the
	// release: the completed rollout makes it the target of its scope.
	late := devices("late", 1, "1.0", nil)[0]
	e.putDevice(t, late)
	e.report(t, late.ID, late.Version)
	e.versions(t, map[string]string{"late00": "2.0"})
}

// TestFailingReleasePauses: 2.0 fails on 30% of the devices, 3 of the 10
// of the canary wave (chosen by label). The rollout pauses itself at the
// canary with the reason, and no device outside the canary is ever
// offered 2.0. An operator points the rollout at the fixed 2.1 (before
// its zip is in the folder: it waits) and resumes it: it moves on to
// every device.
func TestFailingReleasePauses(t *testing.T) {
	canary := devices("canary", 10, "1.0", fleet.Labels{"ring": "canary"})
	rest := devices("main", 30, "1.0", fleet.Labels{"ring": "main"})
	failing := map[string]bool{"canary01": true, "canary04": true, "canary07": true}
	for i := range 9 {
		failing[rest[i*3].ID] = true
	}
	e := setup(t, catalogOf(release("2.0"), release("1.0")), append(canary, rest...)...)
	fail := func(id, version string) bool { return version == "2.0" && failing[id] }
	e.sim.fail.Store(&fail)

	ring := fleet.Selector{Match: fleet.Labels{"ring": "canary"}}
	e.create(t, fleet.Rollout{ID: "fix-me", Version: "2.0", Waves: []fleet.Wave{
		{Name: "canary", Selector: &ring, ErrorPercent: 20},
		{Name: "half", Percent: 50, ErrorPercent: 20},
		{Name: "all", Percent: 100, ErrorPercent: 20},
	}})
	r := e.waitRollout(t, "fix-me", state(fleet.RolloutPaused))
	if want := "wave canary: 3 of 10 installs failed (30%), above its 20% error threshold"; r.Reason != want {
		t.Errorf("reason %q, want %q", r.Reason, want)
	}
	if r.Wave != 0 {
		t.Errorf("paused at wave %d, want the canary", r.Wave)
	}
	for _, d := range canary {
		if m, ok := r.Members[d.ID]; !ok || m.Wave != 0 {
			t.Errorf("%s: member %v in wave %d, want the canary", d.ID, ok, m.Wave)
		}
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		r := e.rollout(t, "fix-me")
		if c := r.Waves[0].Counts; c != (fleet.WaveCounts{Devices: 10, Succeeded: 7, Failed: 3}) {
			return fmt.Errorf("canary counts %+v", c)
		}
		return nil
	})
	for _, o := range e.sim.received() {
		if o.Version == "2.0" && o.device[:6] != "canary" {
			t.Errorf("%s, outside the canary, was offered 2.0", o.device)
		}
	}

	// The fixed release: the rollout waits for its zip, and offers
	// nothing meanwhile.
	e.update(t, "fix-me", func(r *fleet.Rollout) {
		if err := r.Retarget("2.1", time.Now()); err != nil {
			t.Error(err)
		}
		if err := r.Resume(time.Now()); err != nil {
			t.Error(err)
		}
	})
	// Until its zip is there, nothing moves; 2.0, the catalog's target
	// now that the rollout is of 2.1, is still held back from the
	// devices the rollout has not reached.
	e.report(t, "main01", "1.0")
	e.report(t, "canary02", "1.0")
	natstest.Eventually(t, 10*time.Second, func() error {
		if r := e.rollout(t, "fix-me"); r.State != fleet.RolloutRunning || r.Wave != 0 {
			return fmt.Errorf("rollout %s, wave %d", r.State, r.Wave)
		}
		return nil
	})
	e.putCatalog(t, catalogOf(release("2.1"), release("2.0"), release("1.0")))
	r = e.waitRollout(t, "fix-me", state(fleet.RolloutCompleted))
	want := map[string]string{}
	for _, d := range append(canary, rest...) {
		want[d.ID] = "2.1"
	}
	e.versions(t, want)
	for _, o := range e.sim.received() {
		if o.Version == "2.0" && o.device[:6] != "canary" {
			t.Errorf("%s, outside the canary, was offered 2.0", o.device)
		}
	}
	offersInOpenWaves(t, e.sim.received(), r)
}

// TestPinned: a device pinned to the version it runs is never offered
// anything by a rollout, nor is it a member; a device pinned below its
// version is offered the pinned one as a rollback, and a group's pin
// holds its devices too.
func TestPinned(t *testing.T) {
	ds := devices("kiosk", 4, "1.0", nil)
	ds[0].Pin = &fleet.Pin{Version: "1.0", Reason: "the museum's exhibit"}
	ds[1].Version, ds[1].Pin = "2.0", &fleet.Pin{Version: "1.5"}
	ds[2].Labels = fleet.Labels{"site": "museum"}
	e := setup(t, catalogOf(release("2.0"), release("1.5"), release("1.0")), ds...)
	if _, err := e.store.UpdateGroup(natstest.Context(t), "museum", func(g *fleet.Group) error {
		g.Selector = fleet.Selector{Match: fleet.Labels{"site": "museum"}}
		g.Pin = &fleet.Pin{Version: "1.0"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.create(t, fleet.Rollout{ID: "everyone", Version: "2.0", Waves: []fleet.Wave{{Percent: 100}}})
	r := e.waitRollout(t, "everyone", state(fleet.RolloutCompleted))
	if got := slices.Sorted(maps.Keys(r.Members)); !slices.Equal(got, []string{"kiosk03"}) {
		t.Errorf("members %v, want only the device nothing pins", got)
	}
	e.versions(t, map[string]string{"kiosk00": "1.0", "kiosk01": "1.5", "kiosk02": "1.0", "kiosk03": "2.0"})
	for _, id := range []string{"kiosk00", "kiosk02"} {
		if vs := e.sim.offeredTo(id); len(vs) > 0 {
			t.Errorf("pinned %s was offered %v", id, vs)
		}
	}
	for _, o := range e.sim.received() {
		if o.device == "kiosk01" && (o.Version != "1.5" || !o.Rollback) {
			t.Errorf("kiosk01, pinned to 1.5, was offered %s (rollback %v)", o.Version, o.Rollback)
		}
	}
	if vs := e.sim.offeredTo("kiosk01"); len(vs) == 0 {
		t.Error("kiosk01 was never offered its pinned 1.5")
	}
}

// TestMaintenanceWindow: the devices of a group with a window from 02:00
// to 04:00 in Berlin are offered nothing at 01:00 there, while the others
// are; once the clock reaches the window, they are offered.
func TestMaintenanceWindow(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	night := devices("night", 3, "1.0", fleet.Labels{"site": "plant"})
	day := devices("day", 2, "1.0", nil)
	srv := natstest.Start(t, natstest.Options{})
	e := &env{srv: srv, store: srv.Store(), clock: &clock{}}
	e.clock.Set(time.Date(2026, 1, 5, 1, 0, 0, 0, berlin))
	e.sim = newSim(t, e.store, srv.Conn("agents"))
	if _, err := e.store.UpdateGroup(natstest.Context(t), "plant", func(g *fleet.Group) error {
		g.Selector = fleet.Selector{Match: fleet.Labels{"site": "plant"}}
		g.Window = &fleet.Window{Start: "02:00", End: "04:00", Zone: "Europe/Berlin"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, d := range append(night, day...) {
		e.putDevice(t, d)
	}
	e.putCatalog(t, catalogOf(release("2.0"), release("1.0")))
	e.stop = e.start(t)

	e.versions(t, map[string]string{"day00": "2.0", "day01": "2.0"})
	// Once the day devices are offered, the whole pass was made; a
	// report of a night device, and a pass of a new catalog, offer
	// nothing to it either.
	e.putCatalog(t, catalogOf(release("2.0"), release("1.5"), release("1.0")))
	e.putDevice(t, devices("day", 3, "1.0", nil)[2])
	e.report(t, "night00", "1.0")
	e.report(t, "day02", "1.0")
	e.versions(t, map[string]string{"day02": "2.0"})
	for _, d := range night {
		if vs := e.sim.offeredTo(d.ID); len(vs) > 0 {
			t.Errorf("%s offered %v outside its window", d.ID, vs)
		}
	}

	e.clock.Set(time.Date(2026, 1, 5, 2, 0, 30, 0, berlin))
	e.versions(t, map[string]string{"night00": "2.0", "night01": "2.0", "night02": "2.0"})
}

// TestMaxConcurrent: a rollout to 12 devices with at most 3 installs at
// once never has more under way; each install that ends lets the next
// waiting member in.
func TestMaxConcurrent(t *testing.T) {
	ds := devices("kiosk", 12, "1.0", nil)
	e := setup(t, catalogOf(release("2.0"), release("1.0")), ds...)
	e.sim.hold.Store(true)
	e.create(t, fleet.Rollout{ID: "three", Version: "2.0", MaxConcurrent: 3, Waves: []fleet.Wave{{Percent: 100}}})

	finished := map[string]bool{}
	for len(finished) < 12 {
		natstest.Eventually(t, 10*time.Second, func() error {
			if n := e.sim.underWay(); n < min(3, 12-len(finished)) {
				return fmt.Errorf("%d installs under way, %d done", n, len(finished))
			}
			return nil
		})
		finished[e.sim.done()] = true
	}
	r := e.waitRollout(t, "three", state(fleet.RolloutCompleted))
	e.sim.mu.Lock()
	most := e.sim.most
	e.sim.mu.Unlock()
	if most != 3 {
		t.Errorf("at most %d installs under way at once, want 3", most)
	}
	offersInOpenWaves(t, e.sim.received(), r)
}

// TestOtherPlatform: a release for linux/arm64 is offered to the arm64
// devices only; the others are no members and are never offered it.
func TestOtherPlatform(t *testing.T) {
	amd := devices("amd", 3, "1.0", nil)
	arm := devices("arm", 3, "1.0", nil)
	for i := range arm {
		arm[i].Hardware.Arch = "aarch64"
	}
	e := setup(t, catalogOf(release("2.0", "linux/arm64"), release("1.0")), append(amd, arm...)...)
	e.create(t, fleet.Rollout{ID: "arm-only", Version: "2.0", Waves: slices.Clone(threeWaves)})
	r := e.waitRollout(t, "arm-only", state(fleet.RolloutCompleted))
	if got := slices.Sorted(maps.Keys(r.Members)); !slices.Equal(got, []string{"arm00", "arm01", "arm02"}) {
		t.Errorf("members %v, want the arm64 devices", got)
	}
	e.versions(t, map[string]string{"arm00": "2.0", "arm01": "2.0", "arm02": "2.0", "amd00": "1.0"})
	for _, d := range amd {
		if vs := e.sim.offeredTo(d.ID); len(vs) > 0 {
			t.Errorf("%s (amd64) offered %v", d.ID, vs)
		}
	}
}

// TestRestartResumes: the decision and rollout services stop in the
// middle of a rollout, with the installs of its second wave under way,
// and start again: the rollout stands where it stood (the same members,
// the same wave), nothing is offered outside its open waves, and it
// moves on to the end once the installs finish.
func TestRestartResumes(t *testing.T) {
	ds := devices("kiosk", 20, "1.0", nil)
	e := setup(t, catalogOf(release("2.0"), release("1.0")), ds...)
	e.sim.hold.Store(true)
	e.create(t, fleet.Rollout{ID: "restart", Version: "2.0", Waves: slices.Clone(threeWaves)})
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := e.sim.underWay(); n != 2 {
			return fmt.Errorf("%d installs under way, want the canary's 2", n)
		}
		return nil
	})
	e.sim.done()
	e.sim.done()
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := e.sim.underWay(); n != 8 {
			return fmt.Errorf("%d installs under way, want the second wave's 8", n)
		}
		return nil
	})
	before := e.rollout(t, "restart")
	e.stop()
	// While the services are down, the fleet moves on: three installs
	// finish.
	for range 3 {
		e.sim.done()
	}
	e.stop = e.start(t)
	// The catalog as read at start offers the open waves' members
	// again (the agents ignore what they are installing); give the
	// restarted services time to look at the rollout.
	e.putCatalog(t, catalogOf(release("2.0"), release("1.0")))
	natstest.Eventually(t, 10*time.Second, func() error {
		r := e.rollout(t, "restart")
		if c := r.Waves[1].Counts; c.Succeeded != 3 {
			return fmt.Errorf("wave 1 counts %+v, want the 3 that finished while the services were down", c)
		}
		return nil
	})
	after := e.rollout(t, "restart")
	if after.Wave != 1 || after.State != fleet.RolloutRunning {
		t.Errorf("after the restart: wave %d, %s; want wave 1, running", after.Wave, after.State)
	}
	if !maps.Equal(before.Members, after.Members) {
		t.Errorf("members changed over the restart")
	}
	if !after.Waves[1].Opened.Equal(before.Waves[1].Opened) {
		t.Errorf("wave 1 opened at %v before the restart, %v after", before.Waves[1].Opened, after.Waves[1].Opened)
	}
	for e.sim.underWay() > 0 {
		e.sim.done()
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if e.sim.underWay() > 0 {
			e.sim.done()
		}
		return state(fleet.RolloutCompleted)(e.rollout(t, "restart"))
	})
	r := e.rollout(t, "restart")
	if !maps.Equal(before.Members, r.Members) {
		t.Errorf("members changed")
	}
	offersInOpenWaves(t, e.sim.received(), r)
}

// TestRollBack: a rolled back rollout offers each device it moved the
// version it ran before, as a rollback; a device it had not reached is
// offered nothing.
func TestRollBack(t *testing.T) {
	ds := devices("kiosk", 10, "1.0", nil)
	ds[9].Version = "1.5"
	e := setup(t, catalogOf(release("2.0"), release("1.5"), release("1.0")), ds...)
	e.create(t, fleet.Rollout{ID: "oops", Version: "2.0", Waves: []fleet.Wave{{Name: "half", Percent: 50, SuccessPercent: 100, Soak: fleet.Duration(time.Hour)}, {Percent: 100}}})
	r := e.waitRollout(t, "oops", func(r fleet.Rollout) error {
		if c := r.Waves[0].Counts; c.Devices == 0 || c.Succeeded != c.Devices {
			return fmt.Errorf("first wave %+v", c)
		}
		return nil
	})
	e.update(t, "oops", func(r *fleet.Rollout) {
		if err := r.RollBack("by an operator", time.Now()); err != nil {
			t.Error(err)
		}
	})
	want := map[string]string{}
	for id, m := range r.Members {
		want[id] = m.From
	}
	e.versions(t, want)
	for _, o := range e.sim.received() {
		m := r.Members[o.device]
		switch {
		case o.Version == "2.0" && m.Wave != 0:
			t.Errorf("%s, of wave %d, offered 2.0", o.device, m.Wave)
		case o.Version != "2.0" && (!o.Rollback || o.Version != m.From):
			t.Errorf("%s offered %s (rollback %v), want a rollback to %s", o.device, o.Version, o.Rollback, m.From)
		}
	}
}

// TestDefaultWavesPause: with the default waves (a 10% canary that
// pauses above 20% failed), a release whose install fails on 3 of every
// 10 devices that take it pauses at the canary of 100 devices, and no
// other device is offered it.
func TestDefaultWavesPause(t *testing.T) {
	e := setup(t, catalogOf(release("2.0"), release("1.0")), devices("kiosk", 100, "1.0", nil)...)
	var mu sync.Mutex
	order := map[string]int{} // the order of the devices' first offers
	fail := func(id, version string) bool {
		mu.Lock()
		defer mu.Unlock()
		n, seen := order[id]
		if !seen {
			n = len(order)
			order[id] = n
		}
		return n%10 == 0 || n%10 == 3 || n%10 == 6
	}
	e.sim.fail.Store(&fail)
	e.create(t, fleet.Rollout{ID: "defaults", Version: "2.0"})
	r := e.waitRollout(t, "defaults", state(fleet.RolloutPaused))
	if want := "wave canary: 3 of 10 installs failed (30%), above its 20% error threshold"; r.Reason != want || r.Wave != 0 {
		t.Errorf("paused at wave %d: %q, want wave 0: %q", r.Wave, r.Reason, want)
	}
	for _, o := range e.sim.received() {
		if m := r.Members[o.device]; m.Wave != 0 {
			t.Errorf("%s, in wave %d, was offered %s", o.device, m.Wave, o.Version)
		}
	}
	offersInOpenWaves(t, e.sim.received(), r)
}
