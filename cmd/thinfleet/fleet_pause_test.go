package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/simfleet"
)

// TestFleetRolloutPausesOnFailures rolls out to 100 simulated agents a
// release whose install fails on 30% of them, in three waves: a canary
// group (ring=canary, every tenth agent) that pauses the rollout when
// more than 20% of it fails, then 50% and 100% of the devices. The
// rollout pauses itself at the canary with the reason, and no device
// outside the canary was offered the release. The operator then drops a
// fixed release, changes the rollout to it and resumes it: the rollout
// moves on through every wave to completion, every device runs the fixed
// release, and the bad one never reached a device outside the canary.
func TestFleetRolloutPausesOnFailures(t *testing.T) {
	const n = 100
	bad := simfleet.Failure{Version: "2.0", Percent: 30}
	r := newRig(t, rigOptions{agents: n, behaviour: simfleet.Behaviour{CanaryEvery: 10, Failures: []simfleet.Failure{bad}}})
	canaries := fleet.Selector{Match: fleet.Labels{"ring": "canary"}}
	r.createRollout(fleet.RolloutSpec{ID: "bad-release", Version: "2.0", Waves: []fleet.Wave{
		{Name: "canary", Selector: &canaries, SuccessPercent: 90, ErrorPercent: 20},
		{Name: "half", Percent: 50, SuccessPercent: 90, ErrorPercent: 20},
		{Name: "all", Percent: 100, SuccessPercent: 90, ErrorPercent: 20},
	}})
	r.publish("2.0", nil)

	ro := r.waitRollout("bad-release", "the rollout choosing its members", func(ro rigRollout) error {
		if len(ro.Members) != n {
			return fmt.Errorf("%d members, want %d", len(ro.Members), n)
		}
		return nil
	})
	canary := membersOf(ro, 0)
	failing := 0
	for _, id := range canary {
		if r.fleet.Agent(id).Labels()["ring"] != "canary" {
			t.Errorf("%s, in the canary wave, is not labelled ring=canary", id)
		}
		if bad.Chooses(r.fleet.Agent(id).Index()) {
			failing++
		}
	}
	if len(canary) != n/10 || failing*100 <= 20*len(canary) {
		t.Fatalf("setup: %d of the %d canary devices fail 2.0; want 10 devices, more than 20%% of them failing", failing, len(canary))
	}

	ro = r.waitRollout("bad-release", "the rollout pausing itself at the canary", inState(fleet.RolloutPaused))
	if ro.Wave != 0 || !strings.Contains(ro.Reason, "canary") || !strings.Contains(ro.Reason, "error threshold") {
		t.Errorf("paused at wave %d with reason %q, want the canary (wave 0) and its error threshold", ro.Wave, ro.Reason)
	}
	outside := func() []string {
		var out []string
		for id := range r.offeredVersion("2.0") {
			if ro.Members[id].Wave != 0 {
				out = append(out, id)
			}
		}
		return out
	}
	if o := outside(); len(o) > 0 {
		t.Errorf("%d devices outside the canary were offered 2.0: %v", len(o), o)
	}

	// The fix: a new release, the rollout changed to it, and resumed.
	r.publish("2.0.1", nil)
	r.rolloutAction("bad-release", "release", map[string]string{"version": "2.0.1"})
	r.rolloutAction("bad-release", "resume", nil)
	ro = r.waitRollout("bad-release", "the resumed rollout completing", inState(fleet.RolloutCompleted))
	r.waitDevices("every device on 2.0.1", r.onVersion("2.0.1", nil))
	if len(ro.Members) != n {
		t.Errorf("the completed rollout has %d members, want %d", len(ro.Members), n)
	}
	if o := outside(); len(o) > 0 {
		t.Errorf("%d devices outside the canary were offered the bad 2.0: %v", len(o), o)
	}
}
