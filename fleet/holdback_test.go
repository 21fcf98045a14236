package fleet_test

import (
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

func TestPlatformMatches(t *testing.T) {
	tests := []struct {
		os, arch  string
		platforms []string
		want      bool
	}{
		{"linux", "aarch64", []string{"linux/arm64"}, true},
		{"Linux", "ARM64", []string{"linux/arm64"}, true},
		{"linux", "x86_64", []string{"linux/amd64"}, true},
		{"linux", "x86_64", []string{"linux/x86_64"}, true},
		{"linux", "x86_64", []string{"linux/arm64"}, false},
		{"darwin", "arm64", []string{"linux/arm64"}, false},
		{"linux", "armv7l", []string{"linux/arm/v7"}, true},
		{"linux", "armv7l", []string{"linux/arm"}, true},
		{"linux", "armv6l", []string{"linux/arm/v7"}, false},
		{"linux", "armv7l", []string{"linux/armv7l"}, true},
		{"linux", "i686", []string{"linux/386"}, true},
		{"linux", "riscv64", []string{"linux"}, true},
		{"linux", "riscv64", []string{"linux/*"}, true},
		{"windows", "amd64", []string{"linux"}, false},
		{"", "", []string{"linux/amd64"}, false},
		{"", "", nil, true},
		{"linux", "amd64", []string{"linux/arm64", "linux/amd64"}, true},
		{"linux", "amd64", []string{"linux/amd64/v9/x"}, false},
	}
	for _, tt := range tests {
		if got := fleet.PlatformMatches(tt.platforms, fleet.Platform(tt.os, tt.arch)); got != tt.want {
			t.Errorf("%s/%s on %q: got %v, want %v", tt.os, tt.arch, tt.platforms, got, tt.want)
		}
	}
}

func TestCountFailure(t *testing.T) {
	r := fleet.Release{Version: "2.0", SHA256: "aa"}
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	d := fleet.Device{Version: "1.0"}
	var pauses []time.Duration
	for i := range 6 {
		started := at.Add(time.Duration(i) * time.Hour)
		d.Install = &fleet.Install{Version: "2.0", State: wire.StateFailed, Detail: "exit 1", Started: started, Updated: started.Add(time.Second)}
		if !d.CountFailure(r, 5, 30*time.Second, 3*time.Minute, at) {
			if i < 5 {
				t.Fatalf("failure %d not counted", i+1)
			}
			break
		}
		if d.CountFailure(r, 5, 30*time.Second, 3*time.Minute, at) {
			t.Errorf("failure %d counted twice", i+1)
		}
		if !d.Retries.Next.IsZero() {
			pauses = append(pauses, d.Retries.Next.Sub(d.Install.Updated))
		}
	}
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 3 * time.Minute}
	if len(pauses) != len(want) {
		t.Fatalf("pauses %v, want %v", pauses, want)
	}
	for i := range want {
		if pauses[i] != want[i] {
			t.Errorf("pauses %v, want %v", pauses, want)
		}
	}
	if !d.Retries.HeldBack || d.Retries.Failures != 5 {
		t.Errorf("after 5 failures: %+v", d.Retries)
	}
	// An interruption is not counted.
	d = fleet.Device{Version: "1.0", Install: &fleet.Install{Version: "2.0", State: wire.StateFailed, Detail: "interrupted: agent restarted"}}
	if d.CountFailure(r, 5, time.Second, time.Second, at) {
		t.Error("an interruption counted as a failure")
	}
}

// BenchmarkHoldBack is one decision for one device: whether the target is
// offered to it, with a failed install to weigh.
func BenchmarkHoldBack(b *testing.B) {
	r := fleet.Release{Version: "1.10.0", SHA256: "aa", Platforms: []string{"linux/amd64"}}
	d := fleet.Device{Version: "1.9.0", Hardware: wire.Hardware{OS: "linux", Arch: "x86_64"},
		Install: &fleet.Install{Version: "1.10.0", State: wire.StateFailed, Detail: "exit 1", Started: time.Unix(1, 0)},
		Retries: &fleet.Retries{Version: "1.10.0", SHA256: "aa", Failures: 1, Tries: 5, Counted: time.Unix(1, 0), Next: time.Unix(2, 0)}}
	now := time.Now()
	for b.Loop() {
		if h := d.HoldBack(r, now); h.Reason != "" || !h.Retry {
			b.Fatal(h)
		}
	}
}
