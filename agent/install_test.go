package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// done reports whether the install of version has ended, and how.
func done(f *fleet, id, version string) (bool, string) {
	s := steps(f.statuses(id), version)
	if n := len(s); n > 0 && (s[n-1] == string(wire.StateInstalled) || s[n-1] == string(wire.StateFailed)) {
		return true, strings.Join(s, " ")
	}
	return false, strings.Join(s, " ")
}

// lastStatus is the last status of version that is not progress.
func lastStatus(f *fleet, id, version string) wire.Status {
	var last wire.Status
	for _, s := range f.statuses(id) {
		if s.Version == version && !s.Progress {
			last = s
		}
	}
	return last
}

// lastStatusOf is the last status of the offer offerID that is not
// progress.
func lastStatusOf(f *fleet, id, offerID string) wire.Status {
	var last wire.Status
	for _, s := range f.statuses(id) {
		if s.OfferID == offerID && !s.Progress {
			last = s
		}
	}
	return last
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// processGone reports whether pid has exited (a zombie has, too).
func processGone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

func TestInstall(t *testing.T) {
	const installed, failed = "installed", "failed"
	tests := []struct {
		name      string
		timeout   time.Duration
		offer     func(t *testing.T, z *zipServer, out string) wire.Offer
		wantSteps []string
		check     func(t *testing.T, st wire.Status, z *zipServer, out, stateDir string)
	}{
		{
			name: "installs",
			offer: func(t *testing.T, z *zipServer, out string) wire.Offer {
				script := fmt.Sprintf("echo \"$THINFLEET_VERSION|$THINFLEET_PREVIOUS_VERSION|$THINFLEET_PACKAGE_DIR\" > %s/ran\necho kept > here.txt\necho all good\n", out)
				return z.put("/u.zip", "1.1", "sh install.sh", makeZip(t, "1.1", "sh install.sh", map[string]string{"install.sh": script}))
			},
			wantSteps: []string{"downloading", "verifying", "installing", installed},
			check: func(t *testing.T, st wire.Status, z *zipServer, out, stateDir string) {
				ran, err := os.ReadFile(filepath.Join(out, "ran"))
				if err != nil {
					t.Fatalf("the install command did not run: %v", err)
				}
				parts := strings.Split(strings.TrimSpace(string(ran)), "|")
				if len(parts) != 3 || parts[0] != "1.1" || parts[1] != "" || !strings.HasPrefix(parts[2], filepath.Join(stateDir, "staging", "1.1-")) {
					t.Errorf("command saw version|previous|dir = %q, want 1.1||%s/staging/1.1-…", ran, stateDir)
				}
				if _, err := os.Stat(filepath.Join(stateDir, "releases", "1.1", "here.txt")); err != nil {
					t.Errorf("package folder not kept as releases/1.1: %v", err)
				}
				if !strings.Contains(st.Output, "all good") {
					t.Errorf("installed status output = %q, want the command's output", st.Output)
				}
			},
		},
		{
			name: "command fails",
			offer: func(t *testing.T, z *zipServer, out string) wire.Offer {
				cmd := `i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done; echo "broken on purpose" >&2; exit 3`
				return z.put("/u.zip", "1.1", cmd, makeZip(t, "1.1", cmd, map[string]string{}))
			},
			wantSteps: []string{"downloading", "verifying", "installing", failed},
			check: func(t *testing.T, st wire.Status, z *zipServer, out, stateDir string) {
				if !strings.Contains(st.Detail, "exit status 3") {
					t.Errorf("detail = %q, want the exit status", st.Detail)
				}
				if !strings.HasSuffix(st.Output, "line 1999\nbroken on purpose\n") || len(st.Output) > outputTail || strings.Contains(st.Output, "line 0\n") {
					t.Errorf("output = %d bytes ending %q, want the last %d bytes", len(st.Output), st.Output[max(0, len(st.Output)-40):], outputTail)
				}
			},
		},
		{
			name: "sha256 mismatch",
			offer: func(t *testing.T, z *zipServer, out string) wire.Offer {
				o := z.put("/u.zip", "1.1", "true", makeZip(t, "1.1", "true", map[string]string{}))
				sum := sha256.Sum256([]byte("something else"))
				o.SHA256 = hex.EncodeToString(sum[:])
				return o
			},
			wantSteps: []string{"downloading", "verifying", failed},
			check: func(t *testing.T, st wire.Status, z *zipServer, out, stateDir string) {
				if !strings.Contains(st.Detail, "sha256") {
					t.Errorf("detail = %q, want it to name the sha256", st.Detail)
				}
			},
		},
		{
			name: "truncated download",
			offer: func(t *testing.T, z *zipServer, out string) wire.Offer {
				data := makeZip(t, "1.1", "true", map[string]string{"big": strings.Repeat("x", 10000)})
				o := z.put("/u.zip", "1.1", "true", data)
				z.set("/u.zip", data[:len(data)-100])
				return o
			},
			wantSteps: []string{"downloading", failed},
			check: func(t *testing.T, st wire.Status, z *zipServer, out, stateDir string) {
				if !strings.Contains(st.Detail, "bytes") {
					t.Errorf("detail = %q, want it to name the sizes", st.Detail)
				}
			},
		},
		{
			name: "one byte flipped in transit",
			offer: func(t *testing.T, z *zipServer, out string) wire.Offer {
				cmd := "touch " + filepath.Join(out, "ran")
				data := makeZip(t, "1.1", cmd, map[string]string{"big": strings.Repeat("x", 10000)})
				o := z.put("/u.zip", "1.1", cmd, data)
				tampered := slices.Clone(data)
				tampered[len(tampered)/2] ^= 0x01
				z.set("/u.zip", tampered)
				return o
			},
			wantSteps: []string{"downloading", "verifying", failed},
			check: func(t *testing.T, st wire.Status, z *zipServer, out, stateDir string) {
				if !strings.Contains(st.Detail, "sha256") {
					t.Errorf("detail = %q, want it to name the sha256", st.Detail)
				}
				if _, err := os.Stat(filepath.Join(out, "ran")); err == nil {
					t.Error("the command of a tampered package ran")
				}
			},
		},
		{
			name: "too long",
			offer: func(t *testing.T, z *zipServer, out string) wire.Offer {
				data := makeZip(t, "1.1", "true", map[string]string{})
				o := z.put("/u.zip", "1.1", "true", data)
				z.set("/u.zip", append(slices.Clone(data), "trailing bytes"...))
				return o
			},
			wantSteps: []string{"downloading", failed},
			check: func(t *testing.T, st wire.Status, z *zipServer, out, stateDir string) {
				if !strings.Contains(st.Detail, "bytes") {
					t.Errorf("detail = %q, want it to name the sizes", st.Detail)
				}
			},
		},
		{
			name: "resumes a download cut short",
			offer: func(t *testing.T, z *zipServer, out string) wire.Offer {
				data := makeZip(t, "1.1", "true", map[string]string{"big": randomHex(20000)})
				z.cutFirstResponse("/u.zip")
				return z.put("/u.zip", "1.1", "true", data)
			},
			wantSteps: []string{"downloading", "verifying", "installing", installed},
			check: func(t *testing.T, st wire.Status, z *zipServer, out, stateDir string) {
				size := len(z.file("/u.zip"))
				if want := fmt.Sprintf("bytes=%d-", size/2); !slices.Contains(z.rangesSeen(), want) {
					t.Errorf("Range headers %q, want %q", z.rangesSeen(), want)
				}
			},
		},
		{
			name: "package version differs from the offer",
			offer: func(t *testing.T, z *zipServer, out string) wire.Offer {
				return z.put("/u.zip", "1.1", "true", makeZip(t, "1.2", "true", map[string]string{}))
			},
			wantSteps: []string{"downloading", "verifying", "installing", failed},
			check: func(t *testing.T, st wire.Status, z *zipServer, out, stateDir string) {
				if !strings.Contains(st.Detail, `"1.2"`) {
					t.Errorf("detail = %q, want the package's version", st.Detail)
				}
			},
		},
		{
			name:    "command timeout kills its process group",
			timeout: time.Second,
			offer: func(t *testing.T, z *zipServer, out string) wire.Offer {
				cmd := fmt.Sprintf("sleep 60 & echo $! > %s/pid; wait", out)
				return z.put("/u.zip", "1.1", cmd, makeZip(t, "1.1", cmd, map[string]string{}))
			},
			wantSteps: []string{"downloading", "verifying", "installing", failed},
			check: func(t *testing.T, st wire.Status, z *zipServer, out, stateDir string) {
				if !strings.Contains(st.Detail, "timed out") {
					t.Errorf("detail = %q, want a timeout", st.Detail)
				}
				data, err := os.ReadFile(filepath.Join(out, "pid"))
				if err != nil {
					t.Fatal(err)
				}
				pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
				waitFor(t, "the command's child killed", func() (bool, string) { return processGone(pid), "" })
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFleet(t, -1)
			z := newZipServer(t)
			out, stateDir := t.TempDir(), t.TempDir()
			startAgent(t, f.url(), Options{StateDir: stateDir, CommandTimeout: tt.timeout})
			waitReady(t, f, "dev-1", 1)
			offer := tt.offer(t, z, out)
			f.offer("dev-1", offer)
			waitFor(t, "install of 1.1 ends", func() (bool, string) { return done(f, "dev-1", "1.1") })

			if got := steps(f.statuses("dev-1"), "1.1"); !slices.Equal(got, tt.wantSteps) {
				t.Errorf("steps = %v, want %v", got, tt.wantSteps)
			}
			st := lastStatus(f, "dev-1", "1.1")
			if st.OfferID != offer.ID {
				t.Errorf("status offer id = %q, want %q", st.OfferID, offer.ID)
			}
			wantVersion := ""
			if tt.wantSteps[len(tt.wantSteps)-1] == installed {
				wantVersion = "1.1"
				waitReady(t, f, "dev-1", 2)
				if vs := f.versions("dev-1"); vs[len(vs)-1].Version != "1.1" {
					t.Errorf("version reported after install = %+v, want 1.1", vs[len(vs)-1])
				}
				checkProgress(t, f.statuses("dev-1"), offer.Size)
			}
			checkState(t, stateDir, wantVersion, wantVersion == "")
			if got := listDir(t, filepath.Join(stateDir, "staging")); len(got) > 0 {
				t.Errorf("staging not emptied: %v", got)
			}
			if got := listDir(t, filepath.Join(stateDir, "downloads")); len(got) > 0 {
				t.Errorf("downloads left behind: %v", got)
			}
			tt.check(t, st, z, out, stateDir)
		})
	}
}

// checkProgress checks that a download reported progress, ending complete.
func checkProgress(t *testing.T, ss []wire.Status, size int64) {
	t.Helper()
	var last *wire.Status
	for i := range ss {
		if ss[i].Progress {
			last = &ss[i]
		}
	}
	if last == nil || last.BytesDone != size || last.BytesTotal != size {
		t.Errorf("last progress = %+v, want %d of %d bytes", last, size, size)
	}
}

// checkState reads state.json from disk.
func checkState(t *testing.T, stateDir, wantVersion string, wantFailed bool) {
	t.Helper()
	s, err := openStore(filepath.Join(stateDir, "state.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st := s.get()
	if st.Version != wantVersion || st.Installing != nil {
		t.Errorf("state: version %q, installing %+v; want %q and no marker", st.Version, st.Installing, wantVersion)
	}
	if _, failed := st.failed("1.1"); failed != wantFailed {
		t.Errorf("state: 1.1 recorded as failed = %v, want %v", failed, wantFailed)
	}
}

func TestOfferDuringInstall(t *testing.T) {
	f := startFleet(t, -1)
	z := newZipServer(t)
	gate := t.TempDir()
	ta := startAgent(t, f.url(), Options{})
	waitReady(t, f, "dev-1", 1)

	// 1.1's command waits for the test to open the gate.
	wait := fmt.Sprintf("while [ ! -f %s/open ]; do sleep 0.02; done", gate)
	first := z.put("/1.1.zip", "1.1", wait, makeZip(t, "1.1", wait, map[string]string{}))
	f.offer("dev-1", first)
	waitFor(t, "1.1 installing", func() (bool, string) {
		s := steps(f.statuses("dev-1"), "1.1")
		return slices.Contains(s, "installing"), fmt.Sprint(s)
	})
	f.offer("dev-1", first) // a repeat of the running one
	f.offer("dev-1", z.put("/1.2.zip", "1.2", "true", makeZip(t, "1.2", "true", map[string]string{})))
	waitFor(t, "the repeat ignored", func() (bool, string) {
		return ta.log.contains("offer ignored: being installed", "version=1.1 "), ""
	})
	writeFile(t, filepath.Join(gate, "open"), "")

	waitFor(t, "1.2 installed after 1.1", func() (bool, string) { return done(f, "dev-1", "1.2") })
	want := []string{"downloading", "verifying", "installing", "installed"}
	for _, v := range []string{"1.1", "1.2"} {
		if got := steps(f.statuses("dev-1"), v); !slices.Equal(got, want) {
			t.Errorf("steps of %s = %v, want %v once", v, got, want)
		}
	}
	if s := ta.store.get(); s.Version != "1.2" || s.PreviousVersion != "1.1" {
		t.Errorf("state = %+v, want 1.2 over 1.1", s)
	}
}
