package decision

import (
	"testing"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

// BenchmarkHoldBack is one decision: whether a device is to be offered
// the target release, which the service makes for every device when the
// catalog changes and for a device at each report of its version.
// Run with: go test -run '^$' -bench . -benchmem ./services/decision
func BenchmarkHoldBack(b *testing.B) {
	target := fleet.Release{Name: "Update", Version: "1.10.2"}
	cases := []struct {
		name string
		d    fleet.Device
		want string
	}{
		{"behind", fleet.Device{ID: "kiosk-1", Version: "1.9.7"}, ""},
		{"current", fleet.Device{ID: "kiosk-2", Version: "1.10.2"}, "device runs 1.10.2"},
		{"failed_before", fleet.Device{ID: "kiosk-3", Version: "1.9.7",
			Install: &fleet.Install{Version: "1.10.2", State: wire.StateFailed, Detail: "command exited 1"}}, "its install of this version failed"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got := holdBack(c.d, target); got != c.want {
					b.Fatalf("holdBack = %q, want %q", got, c.want)
				}
			}
		})
	}
}
