package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

// TestFleetRolloutWaves rolls a release out to 50 simulated agents in
// three waves, 10%, 50% and 100%, each held for an hour of the services'
// clock once it has succeeded: while a wave soaks, exactly its devices
// (and the earlier waves') run the release and no other device was
// offered it; moving the clock on opens the next wave; after the last,
// the rollout completes with every device on the release.
func TestFleetRolloutWaves(t *testing.T) {
	const n = 50
	r := newRig(t, rigOptions{agents: n})
	hour := fleet.Duration(time.Hour)
	r.createRollout(fleet.RolloutSpec{ID: "waves", Version: "2.0", Waves: []fleet.Wave{
		{Name: "canary", Percent: 10, SuccessPercent: 100, Soak: hour},
		{Name: "half", Percent: 50, SuccessPercent: 100, Soak: hour},
		{Name: "all", Percent: 100, SuccessPercent: 100},
	}})
	// The release arrives after the rollout: the catalog's newest release
	// never reaches a device the rollout has not opened to.
	r.publish("2.0", nil)
	ro := r.waitRollout("waves", "the rollout choosing its members", func(ro rigRollout) error {
		if len(ro.Members) != n {
			return fmt.Errorf("%d members, want %d", len(ro.Members), n)
		}
		return nil
	})
	sizes := []int{0, 0, 0}
	for _, m := range ro.Members {
		sizes[m.Wave]++
	}
	if want := []int{5, 20, 25}; fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Fatalf("waves of %v devices, want %v (10%%, then up to 50%%, then the rest)", sizes, want)
	}

	for wave, name := range []string{"canary", "half"} {
		open := membersOf(ro, wave)
		r.waitDevices(fmt.Sprintf("the %s wave on 2.0, nobody else", name), r.onVersion("2.0", open))
		ro = r.waitRollout("waves", "the "+name+" wave soaking", func(ro rigRollout) error {
			if ro.Wave != wave || ro.Waves[wave].Done.IsZero() || ro.State != fleet.RolloutRunning {
				return fmt.Errorf("want wave %d done and soaking", wave)
			}
			return nil
		})
		if got, want := len(r.offeredVersion("2.0")), len(open); got != want {
			t.Errorf("while the %s wave soaks, %d devices were offered 2.0, want its %d and the earlier waves'", name, got, want)
		}
		for id := range r.offeredVersion("2.0") {
			if m := ro.Members[id]; m.Wave > wave {
				t.Errorf("%s, of wave %d, was offered 2.0 while wave %d soaked", id, m.Wave, wave)
			}
		}
		r.clock.Set(r.clock.Now().Add(time.Hour + time.Minute))
	}
	ro = r.waitRollout("waves", "the rollout completing", inState(fleet.RolloutCompleted))
	r.waitDevices("every device on 2.0", r.onVersion("2.0", nil))
	for i := 1; i < len(ro.Waves); i++ {
		if ro.Waves[i].Opened.Before(ro.Waves[i-1].Done) {
			t.Errorf("wave %d opened at %v, before wave %d was done (%v)", i, ro.Waves[i].Opened, i-1, ro.Waves[i-1].Done)
		}
	}
}
