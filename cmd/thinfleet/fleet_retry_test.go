package main

import (
	"testing"

	"github.com/thinfleet/thinfleet/internal/simfleet"
	"github.com/thinfleet/thinfleet/wire"
)

// TestFleetTransientFailureRetried drops a release whose first install
// fails on half of 20 simulated agents (a download host gone for a
// moment), with no rollout and no operator: the automatic retry offers
// it again, each of those agents installs it at its second try, and
// every device ends on the release, none held back.
func TestFleetTransientFailureRetried(t *testing.T) {
	const n = 20
	flaky := simfleet.Failure{Version: "1.0", Percent: 50, Once: true}
	r := newRig(t, rigOptions{agents: n, behaviour: simfleet.Behaviour{Failures: []simfleet.Failure{flaky}}})
	r.publish("1.0", nil)
	r.waitDevices("every device on 1.0", r.onVersion("1.0", nil))
	retried := 0
	for _, a := range r.fleet.Agents() {
		want := 1
		if flaky.Chooses(a.Index()) {
			want = 2
			retried++
		}
		if got := a.Attempts("1.0"); got != want {
			t.Errorf("%s installed 1.0 in %d tries, want %d", a.ID(), got, want)
		}
	}
	if retried == 0 {
		t.Fatal("setup: no agent fails its first try")
	}
	ds, err := r.devices()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range r.fleet.Agents() {
		if d := ds[a.ID()]; d.Install != nil && d.Install.State != wire.StateInstalled {
			t.Errorf("%s: install %+v, want installed", a.ID(), *d.Install)
		}
	}
}
