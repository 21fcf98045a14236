package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	inproc "github.com/thinfleet/thinfleet/agent"
	"github.com/thinfleet/thinfleet/fleet"
)

// TestCanaryRolloutInBrowser drives a canary rollout from the dashboard,
// over the real server binary and ten in-process agents: the operator
// creates a rollout of a release not yet in the catalog with a 10%
// canary, drops its zip, watches the canary install it on the rollout's
// page without a reload (no other device is offered it meanwhile), pauses
// and resumes it, and sees it advance to every device and complete.
//
// The release's install command waits for a gate file, so the canary's
// install is in progress for as long as the test needs, whatever the
// machine's speed.
func TestCanaryRolloutInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test runs the binaries and chromium")
	}
	b := newBrowser(t)
	root := t.TempDir()
	updates := filepath.Join(root, "updates")
	srv := startServer(t, filepath.Join(root, "data"), updates, "127.0.0.1:0", "127.0.0.1:0")
	const fleetSize = 10
	startFleet(t, srv.natsURL, root, fleetSize)
	waitFor(t, 60*time.Second, "ten agents alive", func() (bool, string) {
		var ds []fleet.Device
		if err := srv.get("/api/v1/devices", &ds); err != nil {
			return false, err.Error()
		}
		alive := 0
		for _, d := range ds {
			if d.Alive {
				alive++
			}
		}
		return alive == fleetSize, fmt.Sprintf("%d of %d alive", alive, len(ds))
	})

	t.Run("sign in and create the rollout", func(t *testing.T) {
		b.t = t
		b.do("open the rollouts", chromedp.Navigate(srv.httpURL+"/rollouts"),
			chromedp.SendKeys(chromedp.ID("token"), adminToken),
			chromedp.Click(chromedp.CSS(`form.login-form button[type="submit"]`)),
		)
		b.landed("/rollouts", "")
		b.do("open the form", chromedp.Click(chromedp.CSS(`a.button[href="/rollouts/new"]`)))
		b.waitFor(15*time.Second, "the New rollout form", `[location.pathname === "/rollouts/new" && document.readyState === "complete" &&
			document.getElementById("start-rollout") !== null, location.href]`)
		b.do("fill in the form",
			chromedp.SendKeys(chromedp.ID("other-version"), "2.0"),
			chromedp.SendKeys(chromedp.ID("waves"), "canary:10,all:100"),
			chromedp.SendKeys(chromedp.ID("rollout-id"), "canary-2"),
		)
		b.shot("rollout-new")
		b.do("start it", chromedp.Click(chromedp.ID("start-rollout")))
		b.landed("/rollouts/canary-2", "notice=rollout-created")
		if got := eval[string](b, `document.querySelector("#summary .alert.warn").textContent`); !strings.Contains(got, "2.0 is not in the catalog yet") {
			t.Errorf("a rollout of a release not in the catalog says %q", got)
		}
		b.shot("rollout-waiting-for-release")
		b.clean()
	})

	gate := filepath.Join(root, "gate")
	t.Run("the canary installs it, nobody else", func(t *testing.T) {
		b.t = t
		b.markPage()
		writeZip(t, updates, "app-2.0.zip",
			map[string]string{"name": "Kiosk app", "version": "2.0",
				"command": "while [ ! -e '" + gate + "' ]; do sleep 0.2; done; echo installed 2.0"},
			map[string]string{"app.txt": "2.0"})
		took := b.waitFor(60*time.Second, "the canary's install in progress on the page", `[(function () {
			var c = document.querySelector("#wave-0 .counts");
			return c !== null && /\b1 in progress\b/.test(c.textContent) && document.querySelector("#summary .alert.warn") === null;
		})(), (document.getElementById("waves") || {}).textContent]`)
		t.Logf("MEASURED: zip dropped to the canary's install on the open page: %s", took.Round(time.Millisecond))
		b.stillSamePage("the canary starting")
		if got := eval[string](b, `document.querySelector("#wave-1 .wave-head").textContent.replace(/\s+/g, " ")`); !strings.Contains(got, "9 devices") {
			t.Errorf("the second wave: %q, want its 9 devices", got)
		}
		b.shot("rollout-canary")
		// While the canary installs, no other device is offered 2.0.
		var ro struct {
			fleet.Rollout
			Counts fleet.WaveCounts `json:"counts"`
		}
		if err := srv.get("/api/v1/rollouts/canary-2?members=1", &ro); err != nil {
			t.Fatal(err)
		}
		if len(ro.Members) != fleetSize || ro.Waves[0].Counts.Devices != 1 {
			t.Fatalf("rollout members %d, canary %+v", len(ro.Members), ro.Waves[0].Counts)
		}
		var ds []fleet.Device
		if err := srv.get("/api/v1/devices", &ds); err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if ro.Members[d.ID].Wave == 0 {
				continue
			}
			if d.Install != nil || d.Version == "2.0" {
				t.Errorf("%s, not in the canary, has %+v, version %q", d.ID, d.Install, d.Version)
			}
		}
		b.clean()
	})

	t.Run("pause and resume", func(t *testing.T) {
		b.t = t
		b.do("pause it", chromedp.SendKeys(chromedp.ID("pause-reason"), "checking the canary by hand"), chromedp.Click(chromedp.ID("pause")))
		b.landed("/rollouts/canary-2", "notice=rollout-pause")
		if got := eval[string](b, `document.querySelector("#summary .alert").textContent.replace(/\s+/g, " ").trim()`); got != "Paused. checking the canary by hand" {
			t.Errorf("paused rollout says %q", got)
		}
		if got := eval[string](b, `document.querySelector("#summary .badge").textContent`); got != "paused" {
			t.Errorf("state %q, want paused", got)
		}
		b.shot("rollout-paused")
		b.do("resume it", chromedp.Click(chromedp.ID("resume")))
		b.landed("/rollouts/canary-2", "notice=rollout-resume")
		if got := eval[string](b, `document.querySelector("#summary .badge").textContent`); got != "running" {
			t.Errorf("state %q, want running", got)
		}
		if n := eval[int](b, `document.querySelectorAll("#summary .alert").length`); n != 0 {
			t.Errorf("a resumed rollout shows %d alerts", n)
		}
		b.clean()
	})

	t.Run("it advances and completes", func(t *testing.T) {
		b.t = t
		b.markPage()
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		b.waitFor(60*time.Second, "the canary done, the next wave open", `[(function () {
			var w0 = document.getElementById("wave-0"), w1 = document.getElementById("wave-1");
			return w0 !== null && /\bdone\b/.test(w0.querySelector(".wave-head").textContent) &&
				/\bopen\b|\bdone\b/.test(w1.querySelector(".wave-head").textContent);
		})(), (document.getElementById("waves") || {}).textContent]`)
		took := b.waitFor(120*time.Second, "every device on 2.0, the rollout completed", `[(function () {
			var badge = document.querySelector("#summary .badge");
			return badge !== null && badge.textContent === "completed" &&
				/^100 %/.test(document.querySelector("#summary .progress-line").textContent.trim());
		})(), (document.getElementById("summary") || {}).textContent]`)
		t.Logf("MEASURED: gate opened to the rollout completed on the open page: %s", took.Round(time.Millisecond))
		b.stillSamePage("the rollout advancing")
		if n := eval[int](b, `document.querySelectorAll("#chart svg.area-chart polygon").length`); n != 4 {
			t.Errorf("the chart has %d bands, want 4", n)
		}
		b.shot("rollout-completed")

		b.do("back to the list", chromedp.Navigate(srv.httpURL+"/rollouts"))
		b.landed("/rollouts", "")
		if got := eval[string](b, `document.querySelector("#rollout-canary-2").textContent.replace(/\s+/g, " ")`); !strings.Contains(got, "completed") || !strings.Contains(got, "10 of 10") {
			t.Errorf("the list shows %q", got)
		}
		b.shot("rollouts")
		b.clean()
	})
}

// startFleet runs n agents in this process against natsURL, kiosk-00 to
// kiosk-<n-1>, until the test ends.
func startFleet(t *testing.T, natsURL, root string, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	logPath := filepath.Join(root, "agents.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		logf.Close()
		if t.Failed() {
			t.Logf("agents' log:\n%s", tail(readFile(logPath), 8000))
		}
	})
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	for i := range n {
		id := fmt.Sprintf("kiosk-%02d", i)
		a, err := inproc.New(inproc.Options{
			Server: natsURL, StateDir: filepath.Join(root, "state-"+id), ID: id, EnrollToken: enrollToken,
			Heartbeat: time.Second, Logger: log,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("agent %s: %v", id, err)
			}
		}()
	}
}
