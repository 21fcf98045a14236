package decision_test

import (
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

// TestOfferWhenBack: a device that was notAlive when the catalog changed
// is offered the target when it turns alive again, even without reporting
// its version (it came back on the connection it had); a device that stays
// alive is not offered again.
func TestOfferWhenBack(t *testing.T) {
	away := fleet.Device{ID: "away", Version: "1.0", LastSeen: time.Now().UTC()}
	current := fleet.Device{ID: "current", Version: "1.10.0", LastSeen: time.Now().UTC()}
	sentinel := fleet.Device{ID: "sentinel", Alive: true, Version: "1.0"}
	e := setup(t, catalog, away, current, sentinel)
	// The catalog's pass offers to the sentinel only: once that offer is
	// in, the pass has listed the devices, and away as notAlive.
	if got := e.until(t, "sentinel"); len(got) != 0 {
		t.Fatalf("offers at start besides the sentinel's: %+v", got)
	}

	// Turn both alive until the device watch, started with the service,
	// sees it happen: each round is a return, but only away is below the
	// target.
	var got offer
	for round := 0; got.device == ""; round++ {
		if round == 50 {
			t.Fatal("no offer to a device back alive after 50 returns")
		}
		for _, alive := range []bool{false, true} {
			away.Alive, current.Alive = alive, alive
			away.LastSeen = time.Now().UTC()
			e.putDevice(t, current)
			e.putDevice(t, away)
		}
		select {
		case m := <-e.offers:
			got = e.decode(t, m)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if got.device != "away" || got.Version != "1.10.0" {
		t.Fatalf("offer %s to %s, want 1.10.0 to away", got.Version, got.device)
	}

	// Alive again (a new LastSeen) is no return: no second offer.
	away.LastSeen = time.Now().UTC()
	e.putDevice(t, away)
	select {
	case m := <-e.offers:
		t.Errorf("offer on %s to a device that stayed alive", m.Subject)
	case <-time.After(time.Second):
	}
}
