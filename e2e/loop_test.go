package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type device struct {
	ID       string    `json:"id"`
	Hostname string    `json:"hostname"`
	Alive    bool      `json:"alive"`
	Version  string    `json:"version"`
	LastSeen time.Time `json:"last_seen"`
	Hardware struct {
		CPUModel    string `json:"cpu_model"`
		CPUCores    int    `json:"cpu_cores"`
		MemoryTotal uint64 `json:"memory_total"`
		OS          string `json:"os"`
		Arch        string `json:"arch"`
	} `json:"hardware"`
}

type event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Device  string    `json:"device"`
	Event   string    `json:"event"`
	Version string    `json:"version"`
	Detail  string    `json:"detail"`
}

func (s *server) devices(t *testing.T) []device {
	var ds []device
	if err := s.get("/api/v1/devices", &ds); err != nil {
		t.Logf("devices: %v", err)
	}
	return ds
}

func showDevices(ds []device) string {
	return summary(ds, func(d device) string { return fmt.Sprintf("%s alive=%v v=%q", d.ID, d.Alive, d.Version) })
}

// allOn reports whether every id is alive on version (any version when
// version is empty).
func allOn(s *server, t *testing.T, ids []string, version string) func() (bool, string) {
	return func() (bool, string) {
		ds := s.devices(t)
		on := 0
		for _, d := range ds {
			for _, id := range ids {
				if d.ID == id && d.Alive && (version == "" || d.Version == version) {
					on++
				}
			}
		}
		return on == len(ids), showDevices(ds)
	}
}

// TestCoreLoop is the whole path a user takes: a server, three agents,
// updates dropped into the folder, a failing update, an agent killed and
// the server killed and started again on the same data.
func TestCoreLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binaries")
	}
	root := t.TempDir()
	data, updates := filepath.Join(root, "data"), filepath.Join(root, "updates")
	srv := startServer(t, data, updates, "127.0.0.1:0", "127.0.0.1:0")

	ids := []string{"agent-1", "agent-2", "agent-3"}
	agents := map[string]*agent{}
	for _, id := range ids {
		agents[id] = startAgent(t, id, srv.natsURL, filepath.Join(root, "state-"+id))
	}

	waitFor(t, 30*time.Second, "three agents alive with hardware", func() (bool, string) {
		ds := srv.devices(t)
		ok := 0
		for _, d := range ds {
			if d.Alive && d.Hostname != "" && d.Hardware.CPUCores > 0 && d.Hardware.MemoryTotal > 0 && d.Hardware.OS != "" {
				ok++
			}
		}
		return ok == 3, showDevices(ds)
	})

	install := map[string]string{"install.sh": "echo \"installing $THINFLEET_VERSION over '$THINFLEET_PREVIOUS_VERSION'\"\necho ok > installed.txt\n"}
	manifest := func(v, cmd string) map[string]string {
		return map[string]string{"name": "Update " + v, "version": v, "command": cmd}
	}

	t.Run("all install 1.0", func(t *testing.T) {
		writeZip(t, updates, "update-1.0.zip", manifest("1.0", "sh install.sh"), install)
		took := waitFor(t, 60*time.Second, "all three on 1.0", allOn(srv, t, ids, "1.0"))
		t.Logf("MEASURED: zip dropped to all three agents reporting 1.0: %s", took.Round(time.Millisecond))
		for _, id := range ids {
			if _, err := os.Stat(filepath.Join(root, "state-"+id, "releases", "1.0", "installed.txt")); err != nil {
				t.Errorf("%s: the install command did not run: %v", id, err)
			}
		}
	})

	t.Run("1.10 is newer than 1.9", func(t *testing.T) {
		writeZip(t, updates, "update-1.9.zip", manifest("1.9", "sh install.sh"), install)
		writeZip(t, updates, "update-1.10.zip", manifest("1.10", "sh install.sh"), install)
		waitFor(t, 60*time.Second, "all three on 1.10", allOn(srv, t, ids, "1.10"))
		var ups []struct {
			Version string `json:"version"`
			Target  bool   `json:"target"`
			URL     string `json:"url"`
		}
		if err := srv.get("/api/v1/updates", &ups); err != nil {
			t.Fatal(err)
		}
		if len(ups) != 3 || ups[0].Version != "1.10" || !ups[0].Target {
			t.Errorf("updates = %+v, want 1.10 first and the target, of 3", ups)
		}
	})

	t.Run("failing update keeps the old version", func(t *testing.T) {
		writeZip(t, updates, "update-1.11.zip", manifest("1.11", "echo broken on purpose; exit 3"), nil)
		for _, id := range ids {
			waitFor(t, 60*time.Second, id+" reports failed 1.11", func() (bool, string) {
				var evs []event
				_ = srv.get("/api/v1/history?device="+id, &evs)
				for _, e := range evs {
					if e.Event == "failed" && e.Version == "1.11" {
						return true, ""
					}
				}
				return false, summary(evs, func(e event) string { return e.Event + " " + e.Version })
			})
		}
		for _, d := range srv.devices(t) {
			if d.Version != "1.10" {
				t.Errorf("%s: version %q after a failed update, want 1.10 kept", d.ID, d.Version)
			}
		}
		var evs []event
		_ = srv.get("/api/v1/history?device=agent-1&event=failed", &evs)
		if len(evs) == 0 || !strings.Contains(evs[0].Detail, "3") {
			t.Errorf("failed event = %+v, want the exit status in its detail", evs)
		}
	})

	t.Run("killed agent turns notAlive", func(t *testing.T) {
		agents["agent-3"].kill()
		took := waitFor(t, 3*time.Second+2*time.Second, "agent-3 notAlive", func() (bool, string) {
			for _, d := range srv.devices(t) {
				if d.ID == "agent-3" {
					return !d.Alive, showDevices([]device{d})
				}
			}
			return false, "agent-3 missing"
		})
		t.Logf("MEASURED: agent SIGKILL to notAlive: %s", took.Round(time.Millisecond))
		// The broker saw the connection close: presence did not have to
		// wait for missed heartbeats.
		var evs []event
		_ = srv.get("/api/v1/history?device=agent-3&event=disconnected", &evs)
		if len(evs) == 0 || !strings.HasPrefix(evs[0].Detail, "connection closed") {
			t.Errorf("disconnected events = %+v, want the newest for the closed connection", evs)
		}
	})

	t.Run("server killed and restarted loses nothing", func(t *testing.T) {
		var before []event
		if err := srv.get("/api/v1/history?limit=100000", &before); err != nil {
			t.Fatal(err)
		}
		devBefore := srv.devices(t)
		srv.kill()
		srv2 := startServer(t, data, updates, srv.natsAddr, srv.httpAddr)
		live := ids[:2]
		waitFor(t, 60*time.Second, "agents reconnect by themselves", allOn(srv2, t, live, "1.10"))
		devAfter := srv2.devices(t)
		if len(devAfter) != len(devBefore) {
			t.Errorf("devices after restart: %d (%s), before: %d", len(devAfter), showDevices(devAfter), len(devBefore))
		}
		var after []event
		if err := srv2.get("/api/v1/history?limit=100000", &after); err != nil {
			t.Fatal(err)
		}
		have := map[uint64]event{}
		for _, e := range after {
			have[e.Seq] = e
		}
		for _, e := range before {
			if got, ok := have[e.Seq]; !ok || got.Event != e.Event || got.Device != e.Device {
				t.Errorf("history event %d (%s %s %s) lost in the restart", e.Seq, e.Device, e.Event, e.Version)
			}
		}
		// The loop still works after the restart.
		writeZip(t, updates, "update-1.12.zip", manifest("1.12", "sh install.sh"), install)
		waitFor(t, 60*time.Second, "live agents on 1.12 after the restart", allOn(srv2, t, live, "1.12"))
	})
}
