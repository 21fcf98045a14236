package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCompose runs docker-compose.yml as the README says: the image built
// by "go tool -modfile=tools/go.mod task image", the server side one container a part, the demo
// profile's three agents. An update dropped into the mounted updates
// folder reaches every agent; an agent cut off from the network turns
// notAlive within three heartbeats and, once back, reconnects and catches
// up on the target by itself.
func TestCompose(t *testing.T) {
	requireDocker(t)
	image := buildImage(t)
	p := newProject(t, image, "docker-compose.yml")

	start := time.Now()
	p.must("up", "-d")
	a := api{base: fmt.Sprintf("http://127.0.0.1:%d", p.httpPort)}
	took := waitFor(t, 3*time.Minute, "web /readyz", func() (bool, string) {
		err := a.get("/readyz", nil)
		return err == nil, fmt.Sprint(err)
	})
	t.Logf("MEASURED: compose up -d to web /readyz: %s", (time.Since(start)).Round(100*time.Millisecond))
	_ = took
	waitFor(t, 2*time.Minute, "every container healthy", func() (bool, string) {
		out, _ := p.run("ps")
		return !strings.Contains(out, "starting") && !strings.Contains(out, "unhealthy") && !strings.Contains(out, "Restarting"), out
	})
	t.Logf("MEASURED: compose up -d to every container healthy: %s", (time.Since(start)).Round(100*time.Millisecond))
	a.token = p.adminToken()
	waitFor(t, time.Minute, "three demo agents alive", func() (bool, string) {
		ds := a.devices()
		alive := 0
		for _, d := range ds {
			if d.Alive {
				alive++
			}
		}
		return len(ds) == 3 && alive == 3, showDevices(ds)
	})

	install := map[string]string{"install.sh": "echo \"installing $THINFLEET_VERSION\"\n"}
	manifest := func(v string) map[string]string {
		return map[string]string{"name": "Update " + v, "version": v, "command": "sh install.sh"}
	}

	t.Run("rollout", func(t *testing.T) {
		writeZip(t, p.updates, "update-1.0.0.zip", manifest("1.0.0"), install)
		took := waitFor(t, 2*time.Minute, "every agent on 1.0.0", a.fleetOn(3, "1.0.0"))
		t.Logf("MEASURED: zip dropped to three agent containers on 1.0.0: %s", took.Round(100*time.Millisecond))
		for _, d := range a.devices() {
			var evs []event
			if err := a.get("/api/v1/history?device="+d.ID+"&event=installed", &evs); err != nil || len(evs) == 0 {
				t.Errorf("%s: no installed event (%v)", d.ID, err)
			}
		}
		var page string
		if err := a.get("/metrics", &page); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`thinfleet_devices{presence="alive"} 3`, `thinfleet_devices_by_version{version="1.0.0"} 3`, "thinfleet_broker_connections{", "thinfleet_http_request_duration_seconds_bucket{"} {
			if !strings.Contains(page, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		promtool(t, page)
	})

	t.Run("partition", func(t *testing.T) {
		const heartbeat = time.Second // THINFLEET_DEMO_HEARTBEAT
		ids := map[string]string{}    // container -> device id
		for _, d := range a.devices() {
			ids[d.Hostname] = d.ID
		}
		id, ok := ids["demo-2"]
		if !ok {
			t.Fatalf("no device with host name demo-2: %v", ids)
		}
		ctr := p.container("agent-2")
		cut := time.Now()
		if out, err := exec.Command("docker", "network", "disconnect", p.network(), ctr).CombinedOutput(); err != nil {
			t.Fatalf("docker network disconnect: %v: %s", err, out)
		}
		reconnected := false
		defer func() {
			if !reconnected {
				_ = exec.Command("docker", "network", "connect", p.network(), ctr).Run()
			}
		}()
		waitFor(t, 3*heartbeat+5*time.Second, id+" notAlive", func() (bool, string) {
			d, _ := a.device(id)
			return !d.Alive, showDevices([]device{d})
		})
		// The API answered it as soon as presence wrote it: the time is
		// presence's three intervals plus the poll and the API.
		gone := time.Since(cut)
		t.Logf("MEASURED: agent container disconnected to notAlive: %s (heartbeat %s)", gone.Round(10*time.Millisecond), heartbeat)
		if gone > 3*heartbeat+2*time.Second {
			t.Errorf("notAlive after %s, want within three heartbeats (%s) and a poll", gone, 3*heartbeat)
		}

		// A new target while it is away: the others move, it cannot.
		writeZip(t, p.updates, "update-2.0.0.zip", manifest("2.0.0"), install)
		waitFor(t, 2*time.Minute, "the two connected agents on 2.0.0", func() (bool, string) {
			ds := a.devices()
			on := 0
			for _, d := range ds {
				if d.ID != id && d.Alive && d.Version == "2.0.0" {
					on++
				}
			}
			return on == 2, showDevices(ds)
		})
		if d, _ := a.device(id); d.Version != "1.0.0" || d.Alive {
			t.Fatalf("cut-off agent: %s, want notAlive on 1.0.0", showDevices([]device{d}))
		}

		back := time.Now()
		if out, err := exec.Command("docker", "network", "connect", p.network(), ctr).CombinedOutput(); err != nil {
			t.Fatalf("docker network connect: %v: %s", err, out)
		}
		reconnected = true
		took := waitFor(t, 3*time.Minute, id+" back, alive on 2.0.0", func() (bool, string) {
			d, _ := a.device(id)
			return d.Alive && d.Version == "2.0.0", showDevices([]device{d})
		})
		t.Logf("MEASURED: network reconnected to the cut-off agent alive on the new target: %s", took.Round(100*time.Millisecond))
		_ = back
		var evs []event
		if err := a.get("/api/v1/history?device="+id, &evs); err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, e := range evs {
			kinds = append(kinds, e.Event+" "+e.Version)
		}
		joined := strings.Join(kinds, ", ")
		for _, want := range []string{"disconnected", "connected", "installed 2.0.0"} {
			if !strings.Contains(joined, want) {
				t.Errorf("history of %s lacks %q: %s", id, want, joined)
			}
		}
	})
}
