package main

import (
	"net/http"
	"testing"
	"time"
	_ "time/tzdata" // the window's named zone, on a machine without tzdata

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/simfleet"
)

// TestFleetMaintenanceWindow gives half of 20 simulated agents (ring=main)
// a group with a maintenance window, 02:00 to 04:00 in Europe/Berlin,
// and drops a release at noon by the services' clock: the other half
// installs it, and the windowed half is offered nothing while the window
// is closed; once the clock says 03:00 the windowed half is offered it
// and installs it.
func TestFleetMaintenanceWindow(t *testing.T) {
	const n = 20
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, rigOptions{agents: n, behaviour: simfleet.Behaviour{CanaryEvery: 2}})
	tomorrow := time.Now().In(berlin).AddDate(0, 0, 1)
	day := func(h int) time.Time {
		return time.Date(tomorrow.Year(), tomorrow.Month(), tomorrow.Day(), h, 0, 0, 0, berlin)
	}
	r.clock.Set(day(12))
	r.act(http.MethodPut, "/api/v1/groups/night", map[string]any{
		"selector": "ring=main",
		"window":   fleet.Window{Start: "02:00", End: "04:00", Zone: "Europe/Berlin"},
	}, http.StatusOK, "group.set", "night")

	var windowed, free []string
	for _, a := range r.fleet.Agents() {
		if a.Labels()["ring"] == "main" {
			windowed = append(windowed, a.ID())
		} else {
			free = append(free, a.ID())
		}
	}
	r.publish("1.0", nil)
	r.waitDevices("the devices without a window on 1.0", r.onVersion("1.0", free))
	for _, id := range windowed {
		if r.offeredVersion("1.0")[id] {
			t.Errorf("%s was offered 1.0 while its window was closed", id)
		}
	}

	opened := time.Now()
	r.clock.Set(day(27)) // 03:00 the day after
	r.waitDevices("every device on 1.0 once the window is open", r.onVersion("1.0", nil))
	for _, id := range windowed {
		at, ok := r.fleet.Agent(id).OfferedAt("1.0")
		if !ok || at.Before(opened) {
			t.Errorf("%s: first offer of 1.0 at %v (%v), before the window opened at %v", id, at, ok, opened)
		}
	}
}
