package inventory

import (
	"slices"

	"github.com/thinfleet/thinfleet/wire"
)

// hardwareChanges names the fields of a and b that differ, as their JSON
// names, ignoring what changes on its own: free disk space and the boot
// time (a reboot is not new hardware).
func hardwareChanges(a, b wire.Hardware) []string {
	a, b = a.Fingerprint(), b.Fingerprint()
	var out []string
	add := func(field string, differ bool) {
		if differ {
			out = append(out, field)
		}
	}
	add("hostname", a.Hostname != b.Hostname)
	add("os", a.OS != b.OS)
	add("platform", a.Platform != b.Platform)
	add("platform_version", a.PlatformVersion != b.PlatformVersion)
	add("kernel_version", a.KernelVersion != b.KernelVersion)
	add("arch", a.Arch != b.Arch)
	add("cpu_model", a.CPUModel != b.CPUModel)
	add("cpu_cores", a.CPUCores != b.CPUCores)
	add("cpu_threads", a.CPUThreads != b.CPUThreads)
	add("memory_total", a.MemoryTotal != b.MemoryTotal)
	add("disks", !slices.Equal(a.Disks, b.Disks))
	add("interfaces", !slices.EqualFunc(a.Interfaces, b.Interfaces, func(x, y wire.Interface) bool {
		return x.Name == y.Name && x.MAC == y.MAC && slices.Equal(x.Addresses, y.Addresses)
	}))
	return out
}

// hardwareKnown reports whether h holds a report, as opposed to the zero
// value of a record that no hw.report reached yet.
func hardwareKnown(h wire.Hardware) bool {
	return len(hardwareChanges(wire.Hardware{}, h)) > 0
}
