package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestBulkActionsInBrowser drives the Clients page's bulk actions over the
// real binaries: three agents report their labels; the operator ticks
// two of them, tags them (Enter in the tag field) and sees the tags on
// both and not on the third; then ticks the third and pins it, with a
// reason, and sees why it is pinned on its row and on its page. (The
// page tests check that each is audited.)
func TestBulkActionsInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test runs the binaries and chromium")
	}
	b := newBrowser(t)
	root := t.TempDir()
	updates := filepath.Join(root, "updates")
	srv := startServer(t, filepath.Join(root, "data"), updates, "127.0.0.1:0", "127.0.0.1:0")
	writeZip(t, updates, "kiosk-1.1.zip", map[string]string{"name": "Kiosk app", "version": "1.1", "command": "echo installed 1.1"}, nil)
	for i, id := range []string{"kiosk-1", "kiosk-2", "kiosk-3"} {
		site := []string{"berlin", "berlin", "munich"}[i]
		startAgent(t, id, srv.natsURL, filepath.Join(root, "state-"+id), "--label", "site="+site)
	}

	b.do("sign in",
		chromedp.Navigate(srv.httpURL+"/clients"),
		chromedp.SendKeys(chromedp.ID("token"), adminToken),
		chromedp.Click(chromedp.CSS(`form.login-form button[type="submit"]`)),
	)
	b.landed("/clients", "")
	b.waitFor(60*time.Second, "three agents on 1.1 with their labels", `[(function (r) {
		return r.length === 3 && r.every(function (x) { return / alive 1\.1 up to date/.test(x) }) &&
			document.querySelector("#device-kiosk-3 .chip").textContent === "site=munich";
	})(`+rowsJS+`), `+rowsJS+`]`)

	const chipsJS = `Array.from(document.querySelectorAll("table.clients tbody tr")).map(function (tr) {
		return tr.querySelector("td.id").textContent + ":" + Array.from(tr.querySelectorAll(".chip")).map(function (c) {
			return (c.classList.contains("tag") ? "tag " : "") + c.textContent.trim();
		}).join(",");
	}).join(" ")`

	top := t // agents started in a subtest live as long as the whole test
	t.Run("tick two and tag them", func(t *testing.T) {
		b.t = t
		b.do("tick kiosk-1 and kiosk-2",
			chromedp.Click(chromedp.CSS(`#device-kiosk-1 input[name="id"]`)),
			chromedp.Click(chromedp.CSS(`#device-kiosk-2 input[name="id"]`)),
		)
		if got := eval[string](b, `document.getElementById("selected-count").textContent`); got != "2 devices selected" {
			t.Errorf("the bar says %q, want 2 devices selected", got)
		}
		if got := eval[bool](b, `document.getElementById("select-page").indeterminate`); !got {
			t.Error("the page's box is not half ticked with two of three")
		}
		// A device that comes meanwhile refreshes the table; the ticks
		// stay.
		b.markPage()
		startAgent(top, "kiosk-4", srv.natsURL, filepath.Join(root, "state-kiosk-4"))
		b.waitFor(30*time.Second, "kiosk-4 on the open page", `[document.getElementById("device-kiosk-4") !== null, `+rowsJS+`]`)
		b.stillSamePage("kiosk-4 appearing")
		ticked := eval[string](b, `Array.from(document.querySelectorAll("input[name=id]:checked")).map(function (c) { return c.value }).join(" ")`)
		if ticked != "kiosk-1 kiosk-2" {
			t.Errorf("after a refresh the ticked devices are %q, want kiosk-1 kiosk-2", ticked)
		}
		if got := eval[string](b, `document.getElementById("selected-count").textContent + " / " + document.getElementById("all-matching").textContent.replace(/\s+/g, " ").trim()`); got != "2 devices selected / or act on all 4 devices" {
			t.Errorf("after a refresh the bar says %q", got)
		}
		b.shot("bulk-ticked")
		// Enter in the tag field tags; it does not fire the bar's first
		// button (offer again).
		b.do("tag them ring=pilot", chromedp.SendKeys(chromedp.CSS(`#bulk input[name="tags"]`), "ring=pilot"+kb.Enter))
		b.landed("/clients", "bulk=tag")
		if got := eval[string](b, `document.querySelector(".bulk-result").textContent.replace(/\s+/g, " ").trim()`); got != "Tagged 2 devices." {
			t.Errorf("notice %q, want Tagged 2 devices.", got)
		}
		want := "kiosk-1:tag ring=pilot,site=berlin kiosk-2:tag ring=pilot,site=berlin kiosk-3:site=munich kiosk-4:"
		if got := eval[string](b, chipsJS); got != want {
			t.Errorf("labels and tags on Clients:\n got %s\nwant %s", got, want)
		}
		if n := eval[int](b, `document.querySelectorAll("input[name=id]:checked").length`); n != 0 {
			t.Errorf("%d boxes still ticked after the action", n)
		}
		b.shot("bulk-tagged")
		b.clean()
	})

	t.Run("the filter by tag, then pin one", func(t *testing.T) {
		b.t = t
		b.do("filter by ring=pilot", chromedp.Navigate(srv.httpURL+"/clients?labels=ring%3Dpilot"))
		b.landed("/clients", "labels=")
		if got := eval[string](b, `Array.from(document.querySelectorAll("td.id")).map(function (td) { return td.textContent }).join(" ")`); got != "kiosk-1 kiosk-2" {
			t.Errorf("ring=pilot shows %q", got)
		}
		b.do("all devices", chromedp.Navigate(srv.httpURL+"/clients"))
		b.landed("/clients", "")
		b.do("tick kiosk-3 and pin it to 1.1",
			chromedp.Click(chromedp.CSS(`#device-kiosk-3 input[name="id"]`)),
			chromedp.SetValue(chromedp.CSS(`#bulk select[name="version"]`), "1.1"),
			chromedp.SendKeys(chromedp.CSS(`#bulk input[name="reason"]`), "till the fair is over"),
			chromedp.Click(chromedp.CSS(`#bulk button[value="pin"]`)),
		)
		b.landed("/clients", "bulk=pin")
		pin := eval[string](b, `(function (tr) {
			return tr.querySelector(".badge.pin").textContent + " / " + tr.querySelector("td.ver .why").textContent;
		})(document.getElementById("device-kiosk-3"))`)
		if !strings.HasPrefix(pin, "pinned to 1.1 / till the fair is over · by admin (dashboard) from 127.0.0.1") {
			t.Errorf("kiosk-3's pin on Clients: %q", pin)
		}
		if n := eval[int](b, `document.querySelectorAll(".badge.pin").length`); n != 1 {
			t.Errorf("%d pinned rows, want 1", n)
		}
		b.shot("bulk-pinned")
		b.do("open kiosk-3", chromedp.Navigate(srv.httpURL+"/clients/kiosk-3"))
		b.landed("/clients/kiosk-3", "")
		if got := eval[string](b, `document.querySelector("dd.pin").textContent.replace(/\s+/g, " ").trim()`); !strings.HasPrefix(got, "pinned to 1.1 till the fair is over") {
			t.Errorf("kiosk-3's page says of its pin: %q", got)
		}
		b.shot("bulk-pinned-client")
		b.clean()
	})
}
