package main

import (
	"net/http"
	"testing"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web"
)

// TestFleetPinnedDeviceUntouched pins one of 20 simulated agents, all on
// 1.0, to 1.0 through the API, then rolls 2.0 out to the fleet: the
// pinned device is no member of the rollout, is never offered 2.0, and
// still runs 1.0 when the rollout has completed with every other device
// on 2.0.
func TestFleetPinnedDeviceUntouched(t *testing.T) {
	const n = 20
	r := newRig(t, rigOptions{agents: n})
	pinned := r.fleet.Agents()[3].ID()
	r.publish("1.0", nil)
	// With no rollout, the newest release is everybody's target.
	r.waitDevices("every device on 1.0", r.onVersion("1.0", nil))
	r.act(http.MethodPut, "/api/v1/devices/"+pinned+"/pin", web.PinRequest{Version: "1.0", Reason: "the kiosk at the entrance stays"},
		http.StatusOK, "device.pin", pinned)

	r.createRollout(fleet.RolloutSpec{ID: "past-the-pin", Version: "2.0"})
	r.publish("2.0", nil)
	ro := r.waitRollout("past-the-pin", "the rollout completing", inState(fleet.RolloutCompleted))
	var others []string
	for _, a := range r.fleet.Agents() {
		if a.ID() != pinned {
			others = append(others, a.ID())
		}
	}
	r.waitDevices("every device but the pinned one on 2.0", r.onVersion("2.0", others))
	if _, member := ro.Members[pinned]; member {
		t.Errorf("the pinned %s is a member of the rollout (wave %d)", pinned, ro.Members[pinned].Wave)
	}
	if len(ro.Members) != n-1 {
		t.Errorf("the rollout has %d members, want the %d unpinned devices", len(ro.Members), n-1)
	}
	if r.offeredVersion("2.0")[pinned] {
		t.Errorf("the pinned %s was offered 2.0", pinned)
	}
	ds, err := r.devices()
	if err != nil {
		t.Fatal(err)
	}
	if d := ds[pinned]; d.Version != "1.0" || d.Pin == nil || d.Pin.Version != "1.0" {
		t.Errorf("the pinned device: version %q, pin %+v; want 1.0 and its pin", d.Version, d.Pin)
	}
}
