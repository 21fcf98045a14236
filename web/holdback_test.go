package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
	"github.com/thinfleet/thinfleet/wire"
)

// TestFailedAndHeldBack: a failed install and a device held back show on
// the Overview (a tile), on Clients (a filter, and the reason in one line
// in the status) and on the device's page; "offer again" clears the hold.
func TestFailedAndHeldBack(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	r := release("2.0", "kiosk-2.0.zip")
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{r}, Target: "2.0"})
	failedAt := time.Now().UTC()
	failed := func(detail string) *fleet.Install {
		return &fleet.Install{Version: "2.0", State: wire.StateFailed, Detail: detail, Started: failedAt.Add(-time.Second), Updated: failedAt}
	}
	p.device(t, "held", func(d *fleet.Device) {
		kiosk("held", "1.0", true)(d)
		d.Install = failed("command exited with 3:\ndisk full")
		d.Retries = &fleet.Retries{Version: "2.0", SHA256: r.SHA256, Failures: 5, Tries: 5, Counted: d.Install.Started, HeldBack: true}
	})
	p.device(t, "failing", func(d *fleet.Device) {
		kiosk("failing", "1.0", true)(d)
		d.Install = failed("download: connection refused")
		d.Retries = &fleet.Retries{Version: "2.0", SHA256: r.SHA256, Failures: 1, Tries: 5, Counted: d.Install.Started, Next: failedAt.Add(time.Hour)}
	})
	p.device(t, "fine", kiosk("fine", "1.0", true))
	p.device(t, "current", kiosk("current", "2.0", true))

	poll.Eventually(t, 10*time.Second, "the Overview tile", func() error {
		tile := p.page(t, "/", 200).Find(".stat.failed")
		got := tile.Find(".value").Text() + " " + strings.Join(strings.Fields(tile.Find(".label").Text()), " ")
		if got != "2 failed installs, 1 held back" || tile.AttrOr("href", "") != "/clients?install=failed" {
			return fmt.Errorf("tile %q", got)
		}
		return nil
	})
	status := func(query string) map[string]string {
		doc := p.page(t, "/clients"+query, 200)
		out := map[string]string{}
		for _, row := range rows(doc.Find("table.clients tbody tr")) {
			cells := strings.Split(row, "|")
			out[cells[1]] = cells[len(cells)-2] // after the checkbox
		}
		return out
	}
	poll.Eventually(t, 10*time.Second, "the Clients filters", func() error {
		f, h := status("?install=failed"), status("?install=held")
		if len(f) == 2 && f["held"] != "" && f["failing"] != "" && len(h) == 1 && h["held"] != "" {
			return nil
		}
		return fmt.Errorf("failed %v, held %v", f, h)
	})
	all := status("")
	for id, want := range map[string]string{
		"held":    "alive held back held back after 5 failed installs of 2.0",
		"failing": "alive failed download: connection refused; install of 2.0 failed once; try 2 of 5 at " + failedAt.Add(time.Hour).Format(time.TimeOnly+" MST"),
		"fine":    "alive",
		"current": "alive",
	} {
		if all[id] != want {
			t.Errorf("status of %s: %q\nwant %q", id, all[id], want)
		}
	}
	if got := strings.Join(strings.Fields(p.page(t, "/clients/held", 200).Find("p.hold").Text()), " "); got != "not offered held back after 5 failed installs of 2.0" {
		t.Errorf("device page says %q", got)
	}

	// Offer again: the count starts afresh, the hold is gone.
	postOffer(t, p, "held")
	d, err := p.store.Device(context.Background(), "held")
	if err != nil {
		t.Fatal(err)
	}
	if rs := d.Retries; rs == nil || rs.HeldBack || rs.Failures != 0 || !rs.For(r) {
		t.Errorf("retries after offer again: %+v", rs)
	}
	poll.Eventually(t, 10*time.Second, "the hold cleared", func() error {
		if h := status("?install=held"); len(h) != 0 || p.page(t, "/clients/held", 200).Find("p.hold").Length() != 0 {
			return fmt.Errorf("held %v", h)
		}
		return nil
	})
}

// TestOfferAgainAPI: POST /api/v1/devices/{id}/offer offers the target
// again and clears the device's count of failed installs.
func TestOfferAgainAPI(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	r := release("2.0", "kiosk-2.0.zip")
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{r}, Target: "2.0"})
	p.device(t, "held", func(d *fleet.Device) {
		kiosk("held", "1.0", true)(d)
		d.Install = &fleet.Install{Version: "2.0", State: wire.StateFailed, Detail: "exit status 3", Started: time.Now()}
		d.Retries = &fleet.Retries{Version: "2.0", SHA256: r.SHA256, Failures: 5, Tries: 5, Counted: d.Install.Started, HeldBack: true}
	})
	p.device(t, "current", kiosk("current", "2.0", true))
	post := func(id string) (int, string) {
		req, _ := http.NewRequest("POST", p.srv.URL+"/api/v1/devices/"+id+"/offer", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var compact bytes.Buffer
		if err := json.Compact(&compact, body); err != nil {
			t.Fatalf("offer %s: %v in %s", id, err, body)
		}
		return resp.StatusCode, compact.String()
	}
	for _, c := range []struct {
		id   string
		code int
		body string
	}{
		{"held", 200, `{"id":"held","offered":"2.0"}`},
		{"current", 409, `{"error":"the device already runs the target"}`},
		{"nobody", 404, `{"error":"no device with that id"}`},
	} {
		if code, body := post(c.id); code != c.code || body != c.body {
			t.Errorf("offer %s: %d %s, want %d %s", c.id, code, body, c.code, c.body)
		}
	}
	d, err := p.store.Device(context.Background(), "held")
	if err != nil {
		t.Fatal(err)
	}
	if rs := d.Retries; rs == nil || rs.HeldBack || rs.Failures != 0 {
		t.Errorf("retries after offer again: %+v", rs)
	}
}
