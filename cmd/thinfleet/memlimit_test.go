package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMemoryLimit: the soft memory limit --memory-limit asks for, from a
// size, from GOMEMLIMIT (left to the runtime), from the process's cgroup
// (v2 and v1, a unit's own limit before the root's) or from the machine's
// memory; bad sizes are refused with the flag's name.
func TestMemoryLimit(t *testing.T) {
	const gib = int64(1) << 30
	write := func(t *testing.T, root string, files map[string]string) {
		for name, text := range files {
			path := filepath.Join(root, name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	meminfo := "MemTotal:       25165824 kB\nMemFree:        1000 kB\n" // 24 GiB
	tests := []struct {
		name   string
		flag   string
		env    string // GOMEMLIMIT
		files  map[string]string
		want   int64
		from   string
		errHas string
	}{
		{name: "size", flag: "768MiB", want: 768 << 20, from: "--memory-limit"},
		{name: "size GiB", flag: "1.5GiB", want: 3 * gib / 2, from: "--memory-limit"},
		{name: "size G", flag: "2G", want: 2 * gib, from: "--memory-limit"},
		{name: "off", flag: "off", want: 0},
		{name: "auto, GOMEMLIMIT", flag: "auto", env: "900MiB", files: map[string]string{"meminfo": meminfo}, want: 0},
		{name: "auto, machine", flag: "auto", files: map[string]string{"meminfo": meminfo, "self": "0::/\n"}, want: 6 * gib, from: "machine"},
		{name: "auto, small machine", flag: "auto", files: map[string]string{"meminfo": "MemTotal: 2097152 kB\n"}, want: gib, from: "machine"},
		{name: "auto, unit's cgroup v2", flag: "", files: map[string]string{
			"meminfo": meminfo, "self": "0::/system.slice/thinfleet.service\n",
			"cg/system.slice/thinfleet.service/memory.max": "2147483648\n", "cg/memory.max": "max\n",
		}, want: 2 * gib * 8 / 10, from: "cgroup"},
		{name: "auto, unlimited unit", flag: "auto", files: map[string]string{
			"meminfo": meminfo, "self": "0::/system.slice/thinfleet.service\n",
			"cg/system.slice/thinfleet.service/memory.max": "max\n",
		}, want: 6 * gib, from: "machine"},
		{name: "auto, cgroup v1", flag: "auto", files: map[string]string{
			"meminfo": meminfo, "self": "4:memory:/docker/abc\n0::/\n",
			"cg/memory/docker/abc/memory.limit_in_bytes": "1073741824\n",
		}, want: gib * 8 / 10, from: "cgroup"},
		{name: "auto, cgroup v1 unlimited", flag: "auto", files: map[string]string{
			"meminfo": meminfo, "self": "4:memory:/\n",
			"cg/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, want: 6 * gib, from: "machine"},
		{name: "not a size", flag: "lots", errHas: "--memory-limit"},
		{name: "unknown unit", flag: "3TB", errHas: "unit"},
		{name: "too small", flag: "10MiB", errHas: "64MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, tt.files)
			sys := sysFiles{procCgroup: filepath.Join(root, "self"), cgroupRoot: filepath.Join(root, "cg"), meminfo: filepath.Join(root, "meminfo")}
			getenv := func(k string) string {
				if k == "GOMEMLIMIT" {
					return tt.env
				}
				return ""
			}
			got, from, err := memoryLimit(tt.flag, getenv, sys)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("memoryLimit(%q) = %d, %v; want an error with %q", tt.flag, got, err, tt.errHas)
				}
				return
			}
			if err != nil || got != tt.want || from != tt.from {
				t.Errorf("memoryLimit(%q) = %d from %q, %v; want %d from %q", tt.flag, got, from, err, tt.want, tt.from)
			}
		})
	}
}
