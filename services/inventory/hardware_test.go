package inventory

import (
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

func TestHardwareChanges(t *testing.T) {
	base := wire.Hardware{
		Hostname: "pos-1", OS: "linux", Platform: "debian", Arch: "amd64", CPUModel: "i5", CPUCores: 4,
		MemoryTotal: 8 << 30,
		Disks:       []wire.Disk{{Mount: "/", FSType: "ext4", Total: 100, Free: 40}},
		Interfaces:  []wire.Interface{{Name: "eth0", MAC: "aa:bb", Addresses: []string{"10.0.0.2/24"}}},
		BootTime:    time.Unix(1000, 0),
	}
	with := func(f func(h *wire.Hardware)) wire.Hardware {
		h := base
		h.Disks = append([]wire.Disk(nil), base.Disks...)
		h.Interfaces = append([]wire.Interface(nil), base.Interfaces...)
		f(&h)
		return h
	}
	tests := []struct {
		name string
		b    wire.Hardware
		want string
	}{
		{"same", base, ""},
		{"free disk space", with(func(h *wire.Hardware) { h.Disks[0].Free = 10 }), ""},
		{"reboot", with(func(h *wire.Hardware) { h.BootTime = time.Unix(2000, 0) }), ""},
		{"memory and disks", with(func(h *wire.Hardware) {
			h.MemoryTotal = 16 << 30
			h.Disks = append(h.Disks, wire.Disk{Mount: "/data", Total: 500})
		}), "memory_total, disks"},
		{"disk replaced", with(func(h *wire.Hardware) { h.Disks[0].Total = 200 }), "disks"},
		{"new address", with(func(h *wire.Hardware) {
			h.Interfaces[0] = wire.Interface{Name: "eth0", MAC: "aa:bb", Addresses: []string{"10.0.0.3/24"}}
		}), "interfaces"},
		{"no interfaces, empty list", with(func(h *wire.Hardware) { h.Interfaces = nil }), "interfaces"},
		{"cpu and host", with(func(h *wire.Hardware) { h.CPUModel, h.CPUCores, h.Hostname = "i7", 8, "pos-2" }), "hostname, cpu_model, cpu_cores"},
		{"containers came", with(func(h *wire.Hardware) {
			h.Interfaces = append(h.Interfaces,
				wire.Interface{Name: "docker0", MAC: "02:42:ac", Addresses: []string{"172.17.0.1/16"}},
				wire.Interface{Name: "br-5f2a9c", MAC: "02:42:ad"}, wire.Interface{Name: "veth1a2b3c", MAC: "9e:01"},
				wire.Interface{Name: "cali12ab", MAC: "ee:ee"}, wire.Interface{Name: "flannel.1"}, wire.Interface{Name: "cni0"},
				wire.Interface{Name: "virbr0"}, wire.Interface{Name: "vxlan.calico"}, wire.Interface{Name: "tun0"}, wire.Interface{Name: "tap3"})
		}), ""},
		{"containers came, and a new address", with(func(h *wire.Hardware) {
			h.Interfaces = []wire.Interface{{Name: "eth0", MAC: "aa:bb", Addresses: []string{"10.0.0.9/24"}}, {Name: "veth9", MAC: "9e:02"}}
		}), "interfaces"},
		{"a second real interface", with(func(h *wire.Hardware) {
			h.Interfaces = append(h.Interfaces, wire.Interface{Name: "wlan0", MAC: "cc:dd"})
		}), "interfaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(hardwareChanges(base, tt.b), ", "); got != tt.want {
				t.Errorf("hardwareChanges = %q, want %q", got, tt.want)
			}
		})
	}
	churn := with(func(h *wire.Hardware) {
		h.Interfaces = append(h.Interfaces, wire.Interface{Name: "veth0ab", MAC: "9e:03"})
	})
	if !onlyChurn(base, churn) || !onlyChurn(churn, base) {
		t.Error("onlyChurn: a veth coming or going is not churn")
	}
	if onlyChurn(base, base) {
		t.Error("onlyChurn(same, same) = true: nothing changed, nothing churned")
	}
	if onlyChurn(base, with(func(h *wire.Hardware) {
		h.Interfaces = append(h.Interfaces, wire.Interface{Name: "veth0ab"})
		h.MemoryTotal = 1
	})) {
		t.Error("onlyChurn with new memory = true")
	}
	if hardwareKnown(wire.Hardware{}) {
		t.Error("hardwareKnown(zero) = true")
	}
	if !hardwareKnown(wire.Hardware{MemoryTotal: 1}) {
		t.Error("hardwareKnown(memory only) = false")
	}
	// An empty list and none are the same after a trip through JSON.
	if got := hardwareChanges(wire.Hardware{Disks: []wire.Disk{}}, wire.Hardware{}); len(got) != 0 {
		t.Errorf("empty vs nil disks: %v", got)
	}
}
