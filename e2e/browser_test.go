package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/wire"
)

// TestDashboardInBrowser drives the dashboard in a real browser over the
// real binaries: sign in, watch three agents, one killed and an update
// dropped, all without a reload, and a hostile hostname shown as text.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test runs the binaries and chromium")
	}
	b := newBrowser(t)
	root := t.TempDir()
	data, updates := filepath.Join(root, "data"), filepath.Join(root, "updates")
	srv := startServer(t, data, updates, "127.0.0.1:0", "127.0.0.1:0")
	agents := map[string]*agent{}
	for _, id := range []string{"agent-1", "agent-2", "agent-3"} {
		agents[id] = startAgent(t, id, srv.natsURL, filepath.Join(root, "state-"+id))
	}

	t.Run("sign in", func(t *testing.T) {
		b.t = t
		b.do("open the dashboard", chromedp.Navigate(srv.httpURL+"/clients"))
		if loc := eval[string](b, `location.pathname`); loc != "/login" {
			t.Fatalf("without a session the dashboard shows %s, want /login", loc)
		}
		b.shot("login")
		b.do("sign in",
			chromedp.SendKeys(chromedp.ID("token"), adminToken),
			chromedp.Click(chromedp.CSS(`form.login-form button[type="submit"]`)),
		)
		b.waitFor(10*time.Second, "back on the clients page", `[location.pathname === "/clients", location.href]`)
		if cookie := eval[string](b, `document.cookie`); strings.Contains(cookie, "thinfleet_session") {
			t.Errorf("the session cookie is readable from JavaScript: %q", cookie)
		}
		b.clean()
	})

	t.Run("three agents on Clients", func(t *testing.T) {
		b.t = t
		b.markPage()
		b.waitFor(30*time.Second, "three agents alive", `[(function (r) {
			return r.length === 3 && r.every(function (x) { return / alive /.test(x) });
		})(`+rowsJS+`), `+rowsJS+`]`)
		b.waitFor(10*time.Second, "the live stream open", `[document.getElementById("live-state").textContent === "live", document.getElementById("live-state").textContent]`)
		b.stillSamePage("agents appearing")
		b.shot("clients")
		b.clean()
	})

	t.Run("killed agent turns notAlive live", func(t *testing.T) {
		b.t = t
		agents["agent-3"].kill()
		took := b.waitFor(10*time.Second, "agent-3 notAlive", `[(function (r) {
			return r.some(function (x) { return /^agent-3 notAlive/.test(x) });
		})(`+rowsJS+`), `+rowsJS+`]`)
		t.Logf("MEASURED: agent SIGKILL to notAlive on the open page: %s", took.Round(time.Millisecond))
		b.stillSamePage("agent-3 going notAlive")
		b.shot("clients-notalive")
		b.clean()
	})

	t.Run("dropped update moves the page", func(t *testing.T) {
		b.t = t
		b.do("open the overview", chromedp.Navigate(srv.httpURL+"/"))
		b.waitFor(10*time.Second, "the live stream open", `[document.getElementById("live-state").textContent === "live", ""]`)
		b.markPage()
		// Random bytes do not compress: the download has something to
		// show. The command takes a moment, so the install is seen.
		payload := make([]byte, 8<<20)
		rand.Read(payload)
		writeZip(t, updates, "update-1.1.zip",
			map[string]string{"name": "Kiosk app", "version": "1.1", "command": "sleep 2; echo installed 1.1"},
			map[string]string{"payload.bin": string(payload)})
		b.waitFor(30*time.Second, "installs in progress with progress bars", `[document.querySelectorAll("#installs progress").length > 0,
			document.getElementById("installs").textContent]`)
		b.shot("overview-installing")
		took := b.waitFor(60*time.Second, "both live agents on 1.1", `[(function () {
			var labels = Array.from(document.querySelectorAll("#chart svg text")).map(function (t) { return t.textContent });
			var i = labels.indexOf("1.1");
			return i >= 0 && labels[i + 1] === "2 · target" && document.querySelectorAll("#installs progress").length === 0;
		})(), document.getElementById("chart").textContent + " / " + document.getElementById("installs").textContent]`)
		t.Logf("MEASURED: progress seen to both agents on 1.1 on the open page: %s", took.Round(time.Millisecond))
		b.stillSamePage("the update")
		b.shot("overview")
		b.clean()

		b.do("open agent-1", chromedp.Navigate(srv.httpURL+"/clients/agent-1"))
		b.waitFor(10*time.Second, "agent-1's timeline shows the install", `[document.querySelector("#timeline").textContent.indexOf("installed") >= 0,
			document.querySelector("#timeline").textContent]`)
		b.shot("client-detail")
		b.clean()
	})

	t.Run("hostile hostname is text", func(t *testing.T) {
		b.t = t
		b.do("open the clients page", chromedp.Navigate(srv.httpURL+"/clients"))
		b.waitFor(10*time.Second, "the live stream open", `[document.getElementById("live-state").textContent === "live", ""]`)
		b.markPage()
		hostile := `<script>alert(1)</script>`
		// A real agent enrolls as hostile-1 and stops; its credentials then
		// report what a compromised client could.
		state := filepath.Join(root, "state-hostile-1")
		creds := filepath.Join(state, "agent.creds")
		a := startAgent(t, "hostile-1", srv.natsURL, state)
		waitFor(t, 30*time.Second, "hostile-1 enrolled", func() (bool, string) {
			_, err := os.Stat(creds)
			return err == nil, fmt.Sprint(err)
		})
		a.kill()
		reportHardware(t, srv.natsURL, creds, "hostile-1", wire.Hardware{
			Hostname: hostile, OS: "linux", Platform: `"><img src=x onerror=alert(2)>`, Arch: "amd64",
			CPUModel: `<svg onload=alert(3)>`, CPUCores: 2, MemoryTotal: 2 << 30,
		})
		b.waitFor(30*time.Second, "the hostile device on the page", `[(function (td) {
			return td !== null && td.textContent === `+jsString(hostile)+`;
		})(document.querySelector("#device-hostile-1 td.host .hostname")), `+rowsJS+`]`)
		if n := eval[int](b, `document.querySelectorAll("main script, main img, main svg[onload], [onerror]").length`); n != 0 {
			t.Errorf("%d injected elements on the page", n)
		}
		b.stillSamePage("the hostile device appearing")
		b.shot("clients-hostile")
		b.do("open the hostile device", chromedp.Navigate(srv.httpURL+"/clients/hostile-1"))
		if got := eval[string](b, `document.querySelector("dd.hostname").textContent`); got != hostile {
			t.Errorf("hostname on the device page = %q, want %q", got, hostile)
		}
		b.shot("client-hostile")
		b.clean() // fails on any dialog
	})

	t.Run("every page", func(t *testing.T) {
		b.t = t
		for _, p := range []struct{ name, path, ready string }{
			{"history", "/history", `#events tbody tr`},
			{"updates", "/updates", `#releases tbody tr`},
			{"downloads", "/downloads", `article.download`},
		} {
			b.do("open "+p.path, chromedp.Navigate(srv.httpURL+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready)))
			b.shot(p.name)
			b.clean()
		}
		b.do("phone size", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
		for _, p := range []string{"overview", "clients"} {
			b.do("open "+p, chromedp.Navigate(srv.httpURL+map[string]string{"overview": "/", "clients": "/clients"}[p]))
			b.shot("phone-" + p)
		}
		b.do("laptop size", chromedp.EmulateReset())
	})

	t.Run("works without JavaScript", func(t *testing.T) {
		b.t = t
		if _, err := chromedp.Call(b.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
			t.Fatal(err)
		}
		defer chromedp.Call(b.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: false})
		b.do("filter by status, JavaScript off", chromedp.Navigate(srv.httpURL+"/clients?q=agent-&alive=alive&sort=-id"))
		rows, err := chromedp.Run(b.ctx, chromedp.AttributesAll(chromedp.CSSAll(`table.clients tbody tr`)))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, r["id"])
		}
		if strings.Join(got, " ") != "device-agent-2 device-agent-1" {
			t.Errorf("alive rows by id, descending, with JavaScript off: %v, want agent-2 then agent-1", got)
		}
		if hidden, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.ID("live-state"), "hidden")); err != nil || !hidden.Exists {
			t.Errorf("the live indicator shows with JavaScript off (%v)", err)
		}
		b.shot("clients-no-js")
	})
}

// reportHardware publishes a hardware report for device id with the
// agent's own credentials, as the agent would: the hostile input comes in
// through the front door.
func reportHardware(t *testing.T, natsURL, creds, id string, hw wire.Hardware) {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.UserCredentials(creds), nats.Name(id), nats.CustomInboxPrefix(wire.AgentInboxPrefix(id)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(wire.HWReport{Hardware: hw, AgentVersion: "hostile"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, wire.HWReportSubject(id), data); err != nil {
		t.Fatalf("publish a hardware report as %s: %v", id, err)
	}
}
