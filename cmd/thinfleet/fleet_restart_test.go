package main

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

// TestFleetRestartMidRollout stops the server while a rollout to 40
// simulated agents soaks its canary wave, and starts it again on the same
// data folder: the rollout stands exactly where it stood (running, the
// same wave, the same members in the same waves, the canary still
// soaking), the agents come back alive, nobody outside the canary has
// been offered the release; moving the clock past the soak then opens
// the next waves and the rollout completes.
func TestFleetRestartMidRollout(t *testing.T) {
	const n = 40
	r := newRig(t, rigOptions{agents: n})
	r.createRollout(fleet.RolloutSpec{ID: "across-a-restart", Version: "2.0", Waves: []fleet.Wave{
		{Name: "canary", Percent: 10, SuccessPercent: 100, Soak: fleet.Duration(time.Hour)},
		{Name: "half", Percent: 50, SuccessPercent: 100},
		{Name: "all", Percent: 100, SuccessPercent: 100},
	}})
	r.publish("2.0", nil)
	before := r.waitRollout("across-a-restart", "the canary soaking", func(ro rigRollout) error {
		if len(ro.Members) != n || ro.Wave != 0 || ro.Waves[0].Done.IsZero() {
			return fmt.Errorf("want %d members and the canary done, soaking", n)
		}
		return nil
	})
	canary := membersOf(before, 0)
	r.waitDevices("the canary on 2.0", r.onVersion("2.0", canary))

	r.restart()
	r.waitDevices("every agent alive again", func(ds map[string]apiDevice) error {
		alive := 0
		for _, d := range ds {
			if d.Alive {
				alive++
			}
		}
		if alive != n {
			return fmt.Errorf("%d of %d alive", alive, n)
		}
		return nil
	})
	after := r.rollout("across-a-restart")
	if after.State != fleet.RolloutRunning || after.Wave != 0 || !after.Waves[0].Done.Equal(before.Waves[0].Done) {
		t.Errorf("after the restart: %s, wave %d, canary done at %v; want running, wave 0, done at %v as before",
			after.State, after.Wave, after.Waves[0].Done, before.Waves[0].Done)
	}
	if !maps.Equal(after.Members, before.Members) {
		t.Errorf("after the restart the members differ:\nbefore %v\nafter  %v", before.Members, after.Members)
	}
	r.waitDevices("the canary on 2.0, nobody else", r.onVersion("2.0", canary))
	for id := range r.offeredVersion("2.0") {
		if before.Members[id].Wave != 0 {
			t.Errorf("%s, of wave %d, was offered 2.0 while the canary soaked", id, before.Members[id].Wave)
		}
	}

	r.clock.Set(r.clock.Now().Add(time.Hour + time.Minute))
	final := r.waitRollout("across-a-restart", "the rollout completing", inState(fleet.RolloutCompleted))
	r.waitDevices("every device on 2.0", r.onVersion("2.0", nil))
	if !maps.Equal(final.Members, before.Members) {
		t.Errorf("the completed rollout's members differ from those chosen before the restart")
	}
}
