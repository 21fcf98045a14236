package rollout

import (
	"fmt"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

func fleetOf(n int, version string) map[string]fleet.Device {
	ds := map[string]fleet.Device{}
	for i := range n {
		id := fmt.Sprintf("d%03d", i)
		ds[id] = fleet.Device{ID: id, Alive: true, Version: version}
	}
	return ds
}

var rel2 = fleet.Release{Version: "2.0", SHA256: "22"}

func newRollout(t *testing.T, waves []fleet.Wave, now time.Time) fleet.Rollout {
	t.Helper()
	r, err := fleet.NewRollout(fleet.RolloutSpec{ID: "r", Version: "2.0", Waves: waves}, "test", now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSoak: the next wave opens only once the wave met its threshold
// for its soak time, on the injected clock.
func TestSoak(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v := view{devices: fleetOf(10, "1.0"), catalog: fleet.Catalog{Releases: []fleet.Release{rel2}}}
	r := newRollout(t, []fleet.Wave{{Name: "canary", Percent: 20, Soak: fleet.Duration(time.Hour)}, {Percent: 100}}, now)
	if !advance(&r, v, now) || len(r.Members) != 10 || r.SHA256 != "22" {
		t.Fatalf("start: %d members, sha %q", len(r.Members), r.SHA256)
	}
	for id, m := range r.Members {
		if m.Wave == 0 {
			d := v.devices[id]
			d.Version = "2.0"
			v.devices[id] = d
		}
	}
	advance(&r, v, now.Add(time.Minute))
	if r.Wave != 0 || !r.Waves[0].Done.Equal(now.Add(time.Minute)) {
		t.Fatalf("wave %d, done %v: want wave 0 done, soaking", r.Wave, r.Waves[0].Done)
	}
	advance(&r, v, now.Add(time.Hour))
	if r.Wave != 0 {
		t.Fatalf("wave %d opened before the soak time passed", r.Wave)
	}
	advance(&r, v, now.Add(time.Hour+time.Minute))
	if r.Wave != 1 || !r.Waves[1].Opened.Equal(now.Add(time.Hour+time.Minute)) {
		t.Fatalf("wave %d (opened %v), want wave 1 open after the soak", r.Wave, r.Waves[1].Opened)
	}
	if advance(&r, v, now.Add(2*time.Hour)) {
		t.Error("advance changed a rollout where nothing changed")
	}
}

// TestJoin: members by the hash's order at the start, in the waves'
// cumulative proportions, a selector wave first; later devices join the
// wave their hash falls in; pinned devices and devices of another
// platform never join; devices not alive join when they are.
func TestJoin(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ds := fleetOf(100, "1.0")
	for _, id := range []string{"d000", "d001", "d002"} {
		d := ds[id]
		d.Labels = fleet.Labels{"ring": "canary"}
		ds[id] = d
	}
	pinned, off := ds["d010"], ds["d011"]
	pinned.Pin, off.Alive = &fleet.Pin{Version: "1.0"}, false
	ds["d010"], ds["d011"] = pinned, off
	armOnly := fleet.Release{Version: "2.0", SHA256: "22"}
	v := view{devices: ds, catalog: fleet.Catalog{Releases: []fleet.Release{armOnly}}}
	ring := fleet.Selector{Match: fleet.Labels{"ring": "canary"}}
	r := newRollout(t, []fleet.Wave{{Name: "canary", Selector: &ring}, {Percent: 10}, {Percent: 50}, {Percent: 100}}, now)
	advance(&r, v, now)
	per := make([]int, 4)
	for _, m := range r.Members {
		per[m.Wave]++
	}
	// 98 devices: 3 labelled, then up to 10, 49 and 98 in all.
	if want := []int{3, 7, 39, 49}; fmt.Sprint(per) != fmt.Sprint(want) {
		t.Errorf("members per wave %v, want %v", per, want)
	}
	for _, id := range []string{"d010", "d011"} {
		if _, ok := r.Members[id]; ok {
			t.Errorf("%s is a member", id)
		}
	}
	if r.Members["d000"].Wave != 0 {
		t.Errorf("a labelled device is in wave %d, not the canary", r.Members["d000"].Wave)
	}
	// The device that was off comes online; a new device appears,
	// labelled: both join, the labelled one the canary.
	off.Alive = true
	ds["d011"] = off
	ds["new"] = fleet.Device{ID: "new", Alive: true, Version: "0.9", Labels: fleet.Labels{"ring": "canary"}}
	advance(&r, v, now.Add(time.Second))
	if m, ok := r.Members["new"]; !ok || m.Wave != 0 || m.From != "0.9" {
		t.Errorf("new: member %v %+v, want the canary, from 0.9", ok, m)
	}
	if _, ok := r.Members["d011"]; !ok {
		t.Error("a device that came online did not join")
	}
	arm := fleet.Device{ID: "arm", Alive: true, Version: "1.0"}
	arm.Hardware.OS, arm.Hardware.Arch = "linux", "aarch64"
	ds["arm"] = arm
	v.catalog.Releases[0].Platforms = []string{"linux/amd64"}
	x := ds["d012"]
	x.Hardware.OS, x.Hardware.Arch = "linux", "x86_64"
	ds["amd"] = fleet.Device{ID: "amd", Alive: true, Version: "1.0", Hardware: x.Hardware}
	advance(&r, v, now.Add(2*time.Second))
	if _, ok := r.Members["amd"]; !ok {
		t.Error("a device of the release's platform did not join")
	}
	if _, ok := r.Members["arm"]; ok {
		t.Error("a device of another platform joined")
	}
	// Joining the wave its hash falls in: over many late devices, about
	// the waves' proportions.
	late := map[int]int{}
	for i := range 1000 {
		w, ok := waveOf(&r, fleet.Device{ID: fmt.Sprint("late", i)})
		if !ok {
			t.Fatal("a late device belongs to no wave")
		}
		late[w]++
	}
	if late[0] != 0 || late[1] < 60 || late[1] > 140 || late[2] < 330 || late[2] > 470 || late[3] < 430 || late[3] > 570 {
		t.Errorf("late devices per wave %v, want about 0, 100, 400, 500", late)
	}
}

// TestCounts: a wave's devices by how they stand with the release, the
// failures of another version not counted; a wave's failures above its
// threshold pause the rollout with the reason.
func TestCounts(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ds := fleetOf(10, "1.0")
	set := func(id string, fn func(d *fleet.Device)) {
		d := ds[id]
		fn(&d)
		ds[id] = d
	}
	set("d000", func(d *fleet.Device) { d.Version = "2.0" })
	set("d001", func(d *fleet.Device) { d.Version = "2.1" })
	set("d002", func(d *fleet.Device) {
		d.Install = &fleet.Install{Version: "2.0", State: wire.StateFailed, Detail: "command exited with 1"}
	})
	set("d003", func(d *fleet.Device) {
		d.Install = &fleet.Install{Version: "1.9", State: wire.StateFailed, Detail: "command exited with 1"}
	})
	set("d004", func(d *fleet.Device) {
		d.Install = &fleet.Install{Version: "2.0", State: wire.StateFailed, Detail: "interrupted: the agent restarted"}
	})
	set("d005", func(d *fleet.Device) { d.Install = &fleet.Install{Version: "2.0", State: wire.StateDownloading} })
	set("d006", func(d *fleet.Device) {
		d.Retries = &fleet.Retries{Version: "2.0", SHA256: "22", Failures: 5, HeldBack: true}
	})
	v := view{devices: ds, catalog: fleet.Catalog{Releases: []fleet.Release{rel2}}}
	r := newRollout(t, []fleet.Wave{{Name: "all", Percent: 100, ErrorPercent: 10}}, now)
	advance(&r, v, now)
	want := fleet.WaveCounts{Devices: 10, Succeeded: 2, Failed: 2, InProgress: 1, Waiting: 5}
	if got := r.Waves[0].Counts; got != want {
		t.Errorf("counts %+v, want %+v", got, want)
	}
	if r.State != fleet.RolloutPaused || r.Reason != "wave all: 2 of 10 installs failed (20%), above its 10% error threshold" {
		t.Errorf("%s: %q", r.State, r.Reason)
	}
	if len(r.Samples) != 1 || r.Samples[0].WaveCounts != want {
		t.Errorf("samples %+v", r.Samples)
	}
}

// TestSamplesThinned: the samples never pass fleet.MaxSamples, keep the
// first and the newest, and stay in order.
func TestSamplesThinned(t *testing.T) {
	r := fleet.Rollout{Waves: []fleet.Wave{{}}}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		r.Waves[0].Counts.Succeeded = i
		if !sample(&r, start.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("sample %d not taken", i)
		}
		if len(r.Samples) > fleet.MaxSamples {
			t.Fatalf("%d samples", len(r.Samples))
		}
	}
	if sample(&r, start.Add(time.Hour)) {
		t.Error("a sample taken when the counts did not change")
	}
	if r.Samples[0].Succeeded != 0 || r.Samples[len(r.Samples)-1].Succeeded != 999 {
		t.Errorf("first %d, last %d", r.Samples[0].Succeeded, r.Samples[len(r.Samples)-1].Succeeded)
	}
	for i := 1; i < len(r.Samples); i++ {
		if !r.Samples[i].Time.After(r.Samples[i-1].Time) {
			t.Fatalf("samples out of order at %d", i)
		}
	}
	if len(r.Samples) < fleet.MaxSamples/2 {
		t.Errorf("thinned to %d samples", len(r.Samples))
	}
}
