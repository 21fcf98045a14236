package hardware

import (
	"context"
	"strings"
	"testing"

	"github.com/thinfleet/thinfleet/wire"
)

func TestCollect(t *testing.T) {
	h, err := Collect(context.Background())
	if err != nil {
		t.Logf("some facts unavailable here: %v", err)
	}
	if h.Hostname == "" {
		t.Error("hostname is empty")
	}
	if h.CPUCores <= 0 || h.CPUThreads <= 0 {
		t.Errorf("cpu cores %d, threads %d; want both > 0", h.CPUCores, h.CPUThreads)
	}
	if h.OS == "" || h.Arch == "" {
		t.Errorf("os %q, arch %q; want both set", h.OS, h.Arch)
	}
	if err := h.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	for _, n := range h.Interfaces {
		if n.Name == "lo" {
			t.Errorf("loopback interface %q reported", n.Name)
		}
	}
	for _, d := range h.Disks {
		if pseudoFS[d.FSType] || d.Total == 0 {
			t.Errorf("disk %+v: pseudo filesystem or empty", d)
		}
	}
	t.Logf("collected: %+v", h)
}

func TestBound(t *testing.T) {
	long := strings.Repeat("é", 300) // two bytes a rune
	h := wire.Hardware{
		Hostname: long, OS: long, Platform: long, PlatformVersion: long,
		KernelVersion: long, Arch: long, CPUModel: long, CPUCores: -1, CPUThreads: 1 << 20,
	}
	for i := 0; i < 100; i++ {
		h.Disks = append(h.Disks, wire.Disk{Mount: long + long, FSType: long})
		n := wire.Interface{Name: long, MAC: long}
		for j := 0; j < 50; j++ {
			n.Addresses = append(n.Addresses, long)
		}
		h.Interfaces = append(h.Interfaces, n)
	}
	if h.Validate() == nil {
		t.Fatal("test input already valid")
	}
	got := bound(h)
	if err := got.Validate(); err != nil {
		t.Errorf("bound(h).Validate() = %v, want nil", err)
	}
	if !strings.HasPrefix(long, got.Hostname) || len(got.Hostname)%2 != 0 {
		t.Errorf("hostname cut to %d bytes, splitting a rune", len(got.Hostname))
	}
}

func TestClip(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"},
		{"aé", 3, "aé"},
		{"", 0, ""},
	}
	for _, tt := range tests {
		if got := clip(tt.s, tt.n); got != tt.want {
			t.Errorf("clip(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}
