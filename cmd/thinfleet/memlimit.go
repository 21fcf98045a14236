package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

// memoryFlags are the server's memory limit and profiling address.
type memoryFlags struct {
	limit string
	pprof string
}

func memoryFlagsOn(fs *flag.FlagSet) *memoryFlags {
	var f memoryFlags
	fs.StringVar(&f.limit, "memory-limit", "auto", "soft limit of the server's memory, e.g. 768MiB or 2GiB: past it the Go garbage collector works harder rather than let the heap double; auto: GOMEMLIMIT if set, else 80% of the cgroup's memory limit, else 25% of the machine's memory, at least 1GiB; off: none")
	fs.StringVar(&f.pprof, "pprof", "", "serve Go's profiles (/debug/pprof/) on this `address`, e.g. 127.0.0.1:6060, without authentication: keep it on loopback (off when empty)")
	return &f
}

// Bounds of the automatic memory limit.
const (
	autoLimitMin       = 1 << 30
	autoLimitOfCgroup  = 0.8
	autoLimitOfMachine = 0.25
)

// apply sets the soft memory limit (debug.SetMemoryLimit) and returns
// it in MiB (0: none) with where it came from, for the log. The limit is
// soft: a heap that needs more still gets it, and the collector never
// takes more than about half the CPU to keep under it. Without one, the
// heap grows to twice what is live between collections (GOGC=100), and
// memory a burst made the runtime take goes back to the system slowly:
// at 10,000 agents, over 500 MB after they all connected.
func (f *memoryFlags) apply(getenv func(string) string) (mib int64, from string, err error) {
	limit, from, err := memoryLimit(f.limit, getenv, hostFiles)
	if err != nil {
		return 0, "", err
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	return limit >> 20, from, nil
}

// sysFiles are where memoryLimit reads the machine's memory and the
// process's cgroup; tests give their own.
type sysFiles struct {
	procCgroup string // /proc/self/cgroup: "0::/system.slice/thinfleet.service"
	cgroupRoot string // where the cgroup v2 hierarchy is mounted
	meminfo    string
}

var hostFiles = sysFiles{procCgroup: "/proc/self/cgroup", cgroupRoot: "/sys/fs/cgroup", meminfo: "/proc/meminfo"}

// memoryLimit is the limit flag asks for, in bytes (0: none), and where
// it comes from. A GOMEMLIMIT the runtime already applies is left to it.
func memoryLimit(flag string, getenv func(string) string, sys sysFiles) (int64, string, error) {
	switch strings.ToLower(strings.TrimSpace(flag)) {
	case "off", "0", "none":
		return 0, "", nil
	case "auto", "":
	default:
		n, err := parseSize(flag)
		if err != nil {
			return 0, "", fmt.Errorf("--memory-limit %q: %w", flag, err)
		}
		return n, "--memory-limit", nil
	}
	if getenv("GOMEMLIMIT") != "" {
		return 0, "", nil // the runtime has it from the environment
	}
	if n := cgroupMax(sys); n > 0 {
		return int64(float64(n) * autoLimitOfCgroup), "cgroup", nil
	}
	if total := memTotal(sys.meminfo); total > 0 {
		return max(int64(float64(total)*autoLimitOfMachine), autoLimitMin), "machine", nil
	}
	return 0, "", nil
}

// cgroupMax is the memory limit of the process's cgroup, 0 if it has
// none: its own (a systemd unit's MemoryMax=, cgroup v2's memory.max or
// v1's memory.limit_in_bytes), else that of the hierarchy's root as the
// process sees it (a container's).
func cgroupMax(sys sysFiles) int64 {
	var files []string
	if b, err := os.ReadFile(sys.procCgroup); err == nil {
		for line := range strings.Lines(string(b)) {
			parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
			switch {
			case len(parts) != 3:
			case parts[0] == "0" && parts[1] == "":
				files = append(files, filepath.Join(sys.cgroupRoot, filepath.Clean("/"+parts[2]), "memory.max"))
			case slices.Contains(strings.Split(parts[1], ","), "memory"):
				files = append(files, filepath.Join(sys.cgroupRoot, "memory", filepath.Clean("/"+parts[2]), "memory.limit_in_bytes"))
			}
		}
	}
	files = append(files, filepath.Join(sys.cgroupRoot, "memory.max"), filepath.Join(sys.cgroupRoot, "memory", "memory.limit_in_bytes"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// "max" (v2) or a number past any machine's memory (v1): no limit.
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n < 1<<50 {
			return n
		}
	}
	return 0
}

// memTotal is MemTotal of /proc/meminfo in bytes, 0 if unknown.
func memTotal(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// parseSize reads a size in bytes, with an optional unit: KiB, MiB, GiB
// (or K, M, G, KB, MB, GB, all powers of 1024, as GOMEMLIMIT's).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 {
		return 0, errors.New("want a size such as 768MiB or 2GiB, or auto or off")
	}
	shift := map[string]uint{"": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20, "g": 30, "gb": 30, "gib": 30}
	sh, ok := shift[unit]
	if !ok {
		return 0, fmt.Errorf("unit %q: want KiB, MiB or GiB", unit)
	}
	n := int64(v * float64(int64(1)<<sh))
	if n < 64<<20 {
		return 0, errors.New("below 64MiB: the server would spend its time collecting garbage")
	}
	return n, nil
}

// servePprof serves Go's profiles on addr, when set, until ctx ends.
func servePprof(ctx context.Context, addr string, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for --pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Warn("serving Go's profiles without authentication", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("pprof: %w", err)
	}
	return nil
}
