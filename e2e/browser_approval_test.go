package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestApprovalInBrowser drives device approval on the dashboard over the
// real binaries, with --approve-devices. One tab keeps Clients open from
// before the agent starts, never reloaded: the agent shows up there
// waiting, then alive once approved, then notAlive and revoked. The other
// tab is the operator's: the overview's count, the Approve button, the
// Revoke form with its confirmation.
func TestApprovalInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test runs the binaries and chromium")
	}
	b := newBrowser(t)
	root := t.TempDir()
	srv := startServer(t, filepath.Join(root, "data"), filepath.Join(root, "updates"), "127.0.0.1:0", "127.0.0.1:0", "--approve-devices")

	b.do("sign in",
		chromedp.Navigate(srv.httpURL+"/clients"),
		chromedp.SendKeys(chromedp.ID("token"), adminToken),
		chromedp.Click(chromedp.CSS(`form.login-form button[type="submit"]`)),
	)
	b.landed("/clients", "")
	// The second tab shares the session; it is the page that stays open.
	tab, closeTab := chromedp.NewContext(b.ctx)
	defer closeTab()
	watcher := &browser{t: t, ctx: tab, artifacts: b.artifacts}
	watcher.do("open the clients page in a second tab", chromedp.Navigate(srv.httpURL+"/clients"))
	watcher.landed("/clients", "")
	watcher.markPage()

	top := t // the agents live as long as the whole test
	t.Run("a new agent waits on Clients", func(t *testing.T) {
		b.t, watcher.t = t, t
		startAgent(top, "kiosk-7", srv.natsURL, filepath.Join(root, "state-kiosk-7"))
		took := watcher.waitFor(30*time.Second, "kiosk-7 waiting for approval", `[(function (tr) {
			return tr !== null && tr.querySelector("td.id").textContent === "kiosk-7" && /\S…\S/.test(tr.querySelector("td.key").textContent);
		})(document.getElementById("pending-kiosk-7")), document.getElementById("pending").textContent]`)
		t.Logf("MEASURED: agent start to waiting on the open page: %s", took.Round(time.Millisecond))
		if n := eval[int](watcher, `document.querySelectorAll("#device-kiosk-7").length`); n != 0 {
			t.Error("a waiting agent is in the fleet's table")
		}
		watcher.stillSamePage("the agent appearing as waiting")
		watcher.shot("approval-pending")
		watcher.clean()

		b.do("open the overview", chromedp.Navigate(srv.httpURL+"/"))
		b.landed("/", "")
		if got := eval[string](b, `(document.querySelector("#stats a.stat.pending .value") || {}).textContent || ""`); got != "1" {
			t.Errorf("overview: %q waiting, want 1", got)
		}
		b.shot("approval-overview")
		b.do("follow the waiting count", chromedp.Click(chromedp.CSS(`#stats a.stat.pending`)))
		b.landed("/clients", "")
		b.clean()
	})

	t.Run("approve, and it comes alive", func(t *testing.T) {
		b.t, watcher.t = t, t
		b.do("approve kiosk-7", chromedp.Click(chromedp.CSS(`#pending-kiosk-7 button[type="submit"]`)))
		b.landed("/clients", "notice=approved")
		b.shot("approval-approved")
		const aliveJS = `[(function (tr) {
			return tr !== null && tr.querySelector("td.status").textContent.trim() === "alive" &&
				document.querySelectorAll("#pending tr").length === 0;
		})(document.getElementById("device-kiosk-7")), ` + rowsJS + ` + " / " + document.getElementById("pending").textContent]`
		took := watcher.waitFor(60*time.Second, "kiosk-7 alive on the open page", aliveJS)
		t.Logf("MEASURED: approved to alive on the open page: at most %s", took.Round(time.Millisecond))
		watcher.stillSamePage("kiosk-7 coming alive")
		watcher.shot("approval-alive")
		watcher.clean()
		b.waitFor(10*time.Second, "kiosk-7 alive on the operator's page", aliveJS)
		b.clean()
	})

	t.Run("revoke on its page, and it goes", func(t *testing.T) {
		b.t, watcher.t = t, t
		b.do("open kiosk-7", chromedp.Navigate(srv.httpURL+"/clients/kiosk-7"))
		b.landed("/clients/kiosk-7", "")
		b.markPage()
		if got := eval[string](b, `document.querySelector("#enrollment dl.facts .badge").textContent`); got != "approved" {
			t.Errorf("identity state %q, want approved", got)
		}
		// The form does not go without its box ticked; the server checks
		// it again (see the web package's tests).
		if eval[bool](b, `document.querySelector("form.revoke").checkValidity()`) {
			t.Error("the revoke form is valid without the confirmation ticked")
		}
		b.do("tick the confirmation", chromedp.Click(chromedp.CSS(`form.revoke input[name="confirm"]`)))
		// A live refresh must not untick it (the identity section changes
		// only with the enrollment): wait until one has swapped in a fresh
		// summary (last seen moves every 10s).
		eval[bool](b, `document.getElementById("summary").__old = true`)
		b.waitFor(30*time.Second, "a live refresh of the device page", `[document.getElementById("summary").__old !== true, "not yet"]`)
		if !eval[bool](b, `document.querySelector("form.revoke input[name=confirm]").checked`) {
			t.Error("a live refresh unticked the confirmation")
		}
		b.stillSamePage("the device page refreshing")
		b.shot("approval-revoke-confirm")
		b.do("revoke kiosk-7", chromedp.Click(chromedp.CSS(`form.revoke button[type="submit"]`)))
		b.landed("/clients/kiosk-7", "notice=revoked")
		b.waitFor(15*time.Second, "kiosk-7 notAlive and revoked on its page", `[(function (badges) {
			return badges.indexOf("notAlive") >= 0 && badges.indexOf("revoked") >= 0 &&
				document.querySelector("#enrollment dl.facts .badge").textContent === "revoked";
		})(Array.from(document.querySelectorAll("#summary .badge")).map(function (b) { return b.textContent })),
			document.getElementById("summary").textContent]`)
		if n := eval[int](b, `document.querySelectorAll("#enrollment form.revoke, #enrollment form.approve").length`); n != 0 {
			t.Errorf("%d approve or revoke forms on a revoked device's identity (only delete is left)", n)
		}
		b.shot("approval-revoked")
		b.clean()

		took := watcher.waitFor(15*time.Second, "kiosk-7 notAlive and revoked on the open page",
			`[/^kiosk-7 notAlive\s+revoked/.test(`+rowsJS+`.join("|")), `+rowsJS+`.join("|")]`)
		t.Logf("MEASURED: revoked to notAlive and revoked on the open page: at most %s", took.Round(time.Millisecond))
		watcher.stillSamePage("kiosk-7 going")
		watcher.shot("approval-revoked-clients")
		watcher.clean()
	})

	t.Run("a waiting device's page fills in, approved on a phone", func(t *testing.T) {
		b.t, watcher.t = t, t
		startAgent(top, "kiosk-8", srv.natsURL, filepath.Join(root, "state-kiosk-8"))
		b.do("phone size", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
		defer b.do("laptop size", chromedp.EmulateReset())
		b.do("open the clients page", chromedp.Navigate(srv.httpURL+"/clients"))
		b.landed("/clients", "")
		b.waitFor(30*time.Second, "kiosk-8 waiting", `[document.getElementById("pending-kiosk-8") !== null, document.getElementById("pending").textContent]`)
		// The Approve button is on the screen, not off to the side.
		if got := eval[string](b, `(function (button, wrap) {
			var r = button.getBoundingClientRect(), w = wrap.getBoundingClientRect();
			return r.right <= w.right && wrap.scrollWidth <= wrap.clientWidth ? "" : "button ends at " + r.right + ", its table at " + w.right + ", scrolls " + wrap.scrollWidth;
		})(document.querySelector("#pending-kiosk-8 button"), document.querySelector("#pending .table-wrap"))`); got != "" {
			t.Errorf("the Approve button is off the phone's screen: %s", got)
		}
		b.shot("approval-phone")

		watcher.do("open kiosk-8's page", chromedp.Navigate(srv.httpURL+"/clients/kiosk-8"))
		watcher.landed("/clients/kiosk-8", "")
		if n := eval[int](watcher, `document.querySelectorAll("#hardware, #install").length`); n != 0 {
			t.Errorf("%d sections about hardware or installs before kiosk-8 reported", n)
		}
		watcher.markPage()
		watcher.shot("approval-waiting-device")

		b.do("approve kiosk-8", chromedp.Click(chromedp.CSS(`#pending-kiosk-8 button[type="submit"]`)))
		b.landed("/clients", "notice=approved")
		took := watcher.waitFor(60*time.Second, "kiosk-8's page with its hardware, alive", `[document.getElementById("hardware") !== null &&
			Array.from(document.querySelectorAll("#summary .badge")).some(function (b) { return b.textContent === "alive" }) &&
			document.querySelector("#enrollment dl.facts .badge").textContent === "approved",
			document.querySelector("main").textContent.replace(/\s+/g, " ").slice(0, 300)]`)
		t.Logf("MEASURED: approved to a filled-in device page: at most %s", took.Round(time.Millisecond))
		watcher.stillSamePage("kiosk-8 reporting for the first time")
		watcher.shot("approval-device-filled-in")
		watcher.clean()
		b.clean()
	})
}

// landed waits until the tab shows path (with query in its query string,
// if set), loaded and with its live stream open.
func (b *browser) landed(path, query string) {
	b.t.Helper()
	b.waitFor(15*time.Second, "on "+path+"?"+query, `[location.pathname === `+jsString(path)+` &&
		location.search.indexOf(`+jsString(query)+`) >= 0 && document.readyState === "complete" &&
		(document.getElementById("live-state") || {}).textContent === "live", location.href]`)
}
