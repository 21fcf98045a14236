// Package hardware collects the facts an agent reports about its machine:
// host, CPU, memory, disks and network interfaces, read with gopsutil.
//
// Collection never fails as a whole. A fact that cannot be read (a
// container hides the CPU model, a sandbox forbids the mount table) stays
// empty and the rest is still reported, and every string and list is cut to
// the bounds of [wire.Hardware.Validate], so the result is always
// sendable.
package hardware

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/host"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/thinfleet/thinfleet/wire"
)

// Collect reads the machine's facts. The error joins what could not be
// read, for the log; the Hardware is filled as far as possible and passes
// Validate even when the error is not nil.
func Collect(ctx context.Context) (wire.Hardware, error) {
	var h wire.Hardware
	var errs []error
	note := func(what string, err error) {
		if err != nil {
			errs = append(errs, errors.New(what+": "+err.Error()))
		}
	}

	var err error
	h.Hostname, err = os.Hostname()
	note("hostname", err)
	h.OS = runtime.GOOS
	h.Platform, _, h.PlatformVersion, err = host.PlatformInformationWithContext(ctx)
	note("platform", err)
	h.KernelVersion, err = host.KernelVersionWithContext(ctx)
	note("kernel version", err)
	h.Arch, err = host.KernelArch()
	note("arch", err)
	if h.Arch == "" {
		h.Arch = runtime.GOARCH
	}
	boot, err := host.BootTimeWithContext(ctx)
	note("boot time", err)
	if boot > 0 {
		h.BootTime = time.Unix(int64(boot), 0).UTC()
	}

	h.CPUModel, h.CPUCores, h.CPUThreads, err = cpuFacts(ctx)
	note("cpu", err)
	vm, err := mem.VirtualMemoryWithContext(ctx)
	note("memory", err)
	if vm != nil {
		h.MemoryTotal = vm.Total
	}
	h.Disks, err = disks(ctx)
	note("disks", err)
	h.Interfaces, err = interfaces(ctx)
	note("interfaces", err)

	return bound(h), errors.Join(errs...)
}

// cpuFacts returns the CPU model, physical cores and logical threads. A
// count that cannot be read falls back to the next best one, so cores is
// never zero on a machine that runs this code.
func cpuFacts(ctx context.Context) (model string, cores, threads int, err error) {
	var errs []error
	infos, e := cpu.InfoWithContext(ctx)
	errs = append(errs, e)
	for _, info := range infos {
		if info.ModelName != "" {
			model = strings.TrimSpace(info.ModelName)
			break
		}
	}
	threads, e = cpu.CountsWithContext(ctx, true)
	errs = append(errs, e)
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	cores, e = cpu.CountsWithContext(ctx, false)
	errs = append(errs, e)
	if cores <= 0 {
		cores = threads
	}
	return model, cores, threads, errors.Join(errs...)
}

// Bounds of wire.Hardware.Validate.
const (
	maxDisks      = 64
	maxInterfaces = 64
	maxAddresses  = 32
)

// bound cuts every string and list of h to what Validate accepts.
func bound(h wire.Hardware) wire.Hardware {
	h.Hostname = clip(h.Hostname, 255)
	h.OS = clip(h.OS, 64)
	h.Platform = clip(h.Platform, 128)
	h.PlatformVersion = clip(h.PlatformVersion, 128)
	h.KernelVersion = clip(h.KernelVersion, 128)
	h.Arch = clip(h.Arch, 64)
	h.CPUModel = clip(h.CPUModel, 256)
	h.CPUCores = min(max(h.CPUCores, 0), 1<<16)
	h.CPUThreads = min(max(h.CPUThreads, 0), 1<<16)

	sort.Slice(h.Disks, func(i, j int) bool { return h.Disks[i].Mount < h.Disks[j].Mount })
	h.Disks = h.Disks[:min(len(h.Disks), maxDisks)]
	for i := range h.Disks {
		h.Disks[i].Mount = clip(h.Disks[i].Mount, 512)
		h.Disks[i].FSType = clip(h.Disks[i].FSType, 64)
	}
	sort.Slice(h.Interfaces, func(i, j int) bool { return h.Interfaces[i].Name < h.Interfaces[j].Name })
	h.Interfaces = h.Interfaces[:min(len(h.Interfaces), maxInterfaces)]
	for i := range h.Interfaces {
		n := &h.Interfaces[i]
		n.Name = clip(n.Name, 64)
		n.MAC = clip(n.MAC, 64)
		n.Addresses = n.Addresses[:min(len(n.Addresses), maxAddresses)]
		for j := range n.Addresses {
			n.Addresses[j] = clip(n.Addresses[j], 64)
		}
	}
	return h
}

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
