package decision_test

import (
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

// BenchmarkHoldBack is one decision: whether a device is to be offered
// the target release, which the service makes for every device when the
// catalog changes and for a device at each report of its version.
// Run with: go test -run '^$' -bench BenchmarkHoldBack -benchmem ./services/decision
func BenchmarkHoldBack(b *testing.B) {
	target := fleet.Release{Name: "Update", Version: "1.10.2", SHA256: "aa"}
	now := time.Now()
	cases := []struct {
		name string
		d    fleet.Device
		want string
	}{
		{"behind", fleet.Device{ID: "kiosk-1", Version: "1.9.7"}, ""},
		{"current", fleet.Device{ID: "kiosk-2", Version: "1.10.2"}, "runs 1.10.2"},
		{"failed_before", fleet.Device{ID: "kiosk-3", Version: "1.9.7",
			Install: &fleet.Install{Version: "1.10.2", State: wire.StateFailed, Detail: "command exited 1", Started: time.Unix(1, 0)},
			Retries: &fleet.Retries{Version: "1.10.2", SHA256: "aa", Failures: 5, Tries: 5, Counted: time.Unix(1, 0), HeldBack: true}},
			"held back after 5 failed installs of 1.10.2"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got := c.d.HoldBack(target, now).Reason; got != c.want {
					b.Fatalf("HoldBack = %q, want %q", got, c.want)
				}
			}
		})
	}
}
