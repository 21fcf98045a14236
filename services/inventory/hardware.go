package inventory

import (
	"slices"
	"strings"

	"github.com/thinfleet/thinfleet/wire"
)

// churnPrefixes begin the names of the network interfaces that come and go
// on their own while the machine stays the same: container and VM
// bridges, the veth pair of each container, overlay and tunnel devices
// that container networks (docker, podman, libvirt, LXC, Kubernetes CNI
// plugins: flannel, calico, cilium, weave) and VPN clients make and
// remove. A machine running containers changes them many times an hour;
// they say nothing about its hardware.
var churnPrefixes = []string{
	"docker", "br-", "veth", "virbr", "vnet", "lxcbr", "lxdbr", "podman", "cni", "flannel",
	"cali", "cilium", "lxc", "weave", "vxlan", "genev_sys", "kube-", "tun", "tap",
}

// churnInterface reports whether the interface called name is one of
// those that come and go on their own (churnPrefixes).
func churnInterface(name string) bool {
	return slices.ContainsFunc(churnPrefixes, func(p string) bool { return strings.HasPrefix(name, p) })
}

// stableInterfaces are ifs without those that come and go on their own.
func stableInterfaces(ifs []wire.Interface) []wire.Interface {
	return slices.DeleteFunc(slices.Clone(ifs), func(n wire.Interface) bool { return churnInterface(n.Name) })
}

// sameInterface reports whether x and y are the same interface with the
// same addresses.
func sameInterface(x, y wire.Interface) bool {
	return x.Name == y.Name && x.MAC == y.MAC && slices.Equal(x.Addresses, y.Addresses)
}

// onlyChurn reports whether b differs from a in its interfaces, but only in
// those that come and go on their own: a container started or stopped,
// and the machine is the same. Such a report is neither an event nor
// written (the record keeps the interfaces of the last report that was;
// free space and boot time, which change on their own, too).
func onlyChurn(a, b wire.Hardware) bool {
	return len(hardwareChanges(a, b)) == 0 && !slices.EqualFunc(a.Interfaces, b.Interfaces, sameInterface)
}

// hardwareChanges names the fields of a and b that differ, as their JSON
// names, ignoring what changes on its own: free disk space, the boot
// time (a reboot is not new hardware) and the interfaces that come and go
// with containers (churnInterface).
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
	add("interfaces", !slices.EqualFunc(stableInterfaces(a.Interfaces), stableInterfaces(b.Interfaces), sameInterface))
	return out
}

// hardwareKnown reports whether h holds a report, as opposed to the zero
// value of a record that no hw.report reached yet.
func hardwareKnown(h wire.Hardware) bool {
	return len(hardwareChanges(wire.Hardware{}, h)) > 0
}
