package main

import (
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/simfleet"
)

// TestFleetConcurrencyCap rolls a release out to 30 simulated agents,
// each install taking 300 ms, in one wave with at most 3 installs at a
// time: the fleet never has more than 3 installs under way at once (the
// simulator counts them from the offer taken to the last status sent),
// and every device ends on the release.
func TestFleetConcurrencyCap(t *testing.T) {
	const n, most = 30, 3
	r := newRig(t, rigOptions{agents: n, behaviour: simfleet.Behaviour{InstallTime: 300 * time.Millisecond}})
	r.createRollout(fleet.RolloutSpec{ID: "three-at-a-time", Version: "1.0", MaxConcurrent: most,
		Waves: []fleet.Wave{{Name: "all", Percent: 100}}})
	r.publish("1.0", nil)
	r.waitRollout("three-at-a-time", "the rollout completing", inState(fleet.RolloutCompleted))
	r.waitDevices("every device on 1.0", r.onVersion("1.0", nil))
	_, got := r.fleet.InProgress()
	t.Logf("at most %d installs under way at once", got)
	if got > most {
		t.Errorf("%d installs were under way at once, want at most %d", got, most)
	}
	if got == 0 {
		t.Error("no install was ever counted under way: the simulator counts nothing")
	}
}
