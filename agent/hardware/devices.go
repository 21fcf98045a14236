package hardware

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/net"

	"github.com/thinfleet/thinfleet/wire"
)

// pseudoFS are filesystems that hold no user data: kernel interfaces,
// memory-backed scratch space and read-only images (snaps).
var pseudoFS = map[string]bool{
	"autofs": true, "binfmt_misc": true, "bpf": true, "cgroup": true, "cgroup2": true,
	"configfs": true, "debugfs": true, "devfs": true, "devpts": true, "devtmpfs": true,
	"efivarfs": true, "fusectl": true, "hugetlbfs": true, "mqueue": true, "nsfs": true,
	"proc": true, "procfs": true, "pstore": true, "ramfs": true, "rpc_pipefs": true,
	"securityfs": true, "selinuxfs": true, "squashfs": true, "sysfs": true,
	"tmpfs": true, "tracefs": true, "fuse.gvfsd-fuse": true, "fuse.portal": true,
	"fuse.lxcfs": true, "nullfs": true,
}

// pseudoMounts are trees under which a mount is the system's or a container
// runtime's business, not a disk of the machine.
var pseudoMounts = []string{"/proc", "/sys", "/dev", "/run", "/snap", "/var/lib/docker", "/var/lib/containers", "/var/lib/kubelet"}

// disks returns the machine's real filesystems, one per device: the one
// mounted closest to the root when a device is mounted more than once (bind
// mounts, btrfs subvolumes, a container's /etc/hosts).
func disks(ctx context.Context) ([]wire.Disk, error) {
	parts, err := disk.PartitionsWithContext(ctx, true)
	if err != nil && len(parts) == 0 {
		return nil, err
	}
	var errs []error
	byDevice := map[string]wire.Disk{}
	for _, p := range parts {
		if pseudoFS[p.Fstype] || underAny(p.Mountpoint, pseudoMounts) {
			continue
		}
		if fi, err := os.Stat(p.Mountpoint); err != nil || !fi.IsDir() {
			continue // a file bind-mounted into a container
		}
		u, err := disk.UsageWithContext(ctx, p.Mountpoint)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if u.Total == 0 {
			continue
		}
		d := wire.Disk{Mount: p.Mountpoint, FSType: p.Fstype, Total: u.Total, Free: u.Free}
		key := p.Device
		if key == "" || key == "none" {
			key = p.Mountpoint
		}
		if prev, ok := byDevice[key]; !ok || len(d.Mount) < len(prev.Mount) {
			byDevice[key] = d
		}
	}
	out := make([]wire.Disk, 0, len(byDevice))
	for _, d := range byDevice {
		out = append(out, d)
	}
	return out, errors.Join(errs...)
}

func underAny(mount string, roots []string) bool {
	for _, r := range roots {
		if mount == r || strings.HasPrefix(mount, r+"/") {
			return true
		}
	}
	return false
}

// interfaces returns the network interfaces other than loopback.
func interfaces(ctx context.Context) ([]wire.Interface, error) {
	list, err := net.InterfacesWithContext(ctx)
	if err != nil {
		return nil, err
	}
	var out []wire.Interface
	for _, n := range list {
		if hasFlag(n.Flags, "loopback") {
			continue
		}
		ni := wire.Interface{Name: n.Name, MAC: n.HardwareAddr}
		for _, a := range n.Addrs {
			ni.Addresses = append(ni.Addresses, a.Addr)
		}
		out = append(out, ni)
	}
	return out, nil
}

func hasFlag(flags []string, want string) bool {
	for _, f := range flags {
		if strings.EqualFold(f, want) {
			return true
		}
	}
	return false
}
