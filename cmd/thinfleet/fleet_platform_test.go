package main

import (
	"testing"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/simfleet"
)

// TestFleetOtherPlatformNeverOffered runs 20 simulated agents, half
// reporting linux/amd64 and half linux/arm64. A release built for
// linux/arm64 alone, the catalog's target, reaches every arm64 device
// and no amd64 one; a rollout of the next arm64 release takes only the
// arm64 devices as members and completes on them; and a release for
// every platform then reaches all of them, the amd64 devices never
// having been offered an arm64 release.
func TestFleetOtherPlatformNeverOffered(t *testing.T) {
	const n = 20
	r := newRig(t, rigOptions{agents: n, behaviour: simfleet.Behaviour{Platforms: []string{"linux/amd64", "linux/arm64"}}})
	var arm, amd []string
	for _, a := range r.fleet.Agents() {
		if a.Hardware().Arch == "arm64" {
			arm = append(arm, a.ID())
		} else {
			amd = append(amd, a.ID())
		}
	}
	armOnly := map[string]any{"platforms": []string{"linux/arm64"}}
	r.publish("1.0", armOnly)
	r.waitDevices("the arm64 devices on 1.0, no amd64 one", r.onVersion("1.0", arm))

	r.createRollout(fleet.RolloutSpec{ID: "arm-next", Version: "1.1"})
	r.publish("1.1", armOnly)
	ro := r.waitRollout("arm-next", "the rollout completing", inState(fleet.RolloutCompleted))
	r.waitDevices("the arm64 devices on 1.1", r.onVersion("1.1", arm))
	if len(ro.Members) != len(arm) {
		t.Errorf("the rollout of an arm64 release has %d members, want the %d arm64 devices", len(ro.Members), len(arm))
	}
	for _, id := range amd {
		if _, ok := ro.Members[id]; ok {
			t.Errorf("the amd64 %s is a member of the rollout of an arm64 release", id)
		}
	}

	r.publish("2.0", nil)
	r.waitDevices("every device on 2.0", r.onVersion("2.0", nil))
	for _, v := range []string{"1.0", "1.1"} {
		got := r.offeredVersion(v)
		for _, id := range amd {
			if got[id] {
				t.Errorf("the amd64 %s was offered the arm64 release %s", id, v)
			}
		}
	}
}
