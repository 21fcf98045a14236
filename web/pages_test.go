package web

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

var sum = strings.Repeat("ab", 32)

func release(version, file string) fleet.Release {
	return fleet.Release{Name: "Kiosk app " + version, Version: version, SHA256: sum, Size: 3 << 20,
		Command: "sh install.sh", File: file, Added: time.Now().Add(-time.Hour), SignatureState: fleet.SignatureUnsigned}
}

func TestOverview(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("1.10", "u-1.10.zip"), release("1.9", "u-1.9.zip")}, Target: "1.10"})
	p.device(t, "a", kiosk("a", "1.10", true))
	p.device(t, "b", kiosk("b", "1.9", true))
	p.device(t, "c", kiosk("c", "1.9", false))
	p.device(t, "d", func(d *fleet.Device) {
		kiosk("d", "", true)(d)
		d.Install = &fleet.Install{Version: "1.10", State: wire.StateDownloading, BytesDone: 1 << 20, BytesTotal: 4 << 20}
	})
	p.event(t, fleet.Event{Device: "a", Event: fleet.EventInstalled, Version: "1.10", Detail: "took 3 s"})

	doc := p.page(t, "/", 200)
	stats := map[string]string{}
	doc.Find("#stats .stat").Each(func(_ int, s *goquery.Selection) {
		stats[strings.TrimSpace(s.Find(".label").Text())] = s.Find(".value").Text()
	})
	want := map[string]string{
		"devices": "4", "alive": "3", "notAlive": "1", "up to date with 1.10": "1",
		"outdated": "3", "installs in progress": "1",
	}
	for k, v := range want {
		if stats[k] != v {
			t.Errorf("stat %q = %q, want %q (all: %v)", k, stats[k], v, stats)
		}
	}
	// One bar per version, newest first, the target marked, no version last.
	bars := texts(doc.Find("#chart svg g text:first-child"))
	if got, want := strings.Join(bars, "|"), "1.10|1.9|no version"; got != want {
		t.Errorf("chart labels = %q, want %q", got, want)
	}
	if got := texts(doc.Find("#chart svg text.count")); strings.Join(got, "|") != "1 · target|2|1" {
		t.Errorf("chart counts = %q, want 1 · target, 2, 1", got)
	}
	if n := doc.Find("#chart rect.target").Length(); n != 1 {
		t.Errorf("%d target bars, want 1", n)
	}
	prog := doc.Find("#installs progress")
	if v, _ := prog.Attr("value"); v != fmt.Sprint(1<<20) {
		t.Errorf("progress value = %q, want %d", v, 1<<20)
	}
	if got := texts(doc.Find("#installs .line .num")); len(got) != 1 || got[0] != "1.0 MiB of 4.0 MiB · 25 %" {
		t.Errorf("install progress text = %q", got)
	}
	if got := texts(doc.Find("#recent tbody tr")); len(got) != 1 || !strings.Contains(got[0], "installed") {
		t.Errorf("last events = %q", got)
	}
	if live, _ := doc.Find("body").Attr("data-live"); !strings.HasPrefix(live, "/live?") {
		t.Errorf("body data-live = %q, want the page's stream", live)
	}
}

func TestClientDetail(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("2.0", "u-2.0.zip")}, Target: "2.0"})
	p.device(t, "kiosk-7", func(d *fleet.Device) {
		kiosk("kiosk-7", "1.0", true)(d)
		d.Install = &fleet.Install{Version: "2.0", State: wire.StateFailed, Detail: "command exited with status 3",
			Output: "step 1 ok\nstep 2: disk full\n", BytesDone: 3 << 20, BytesTotal: 3 << 20}
	})
	for _, k := range []fleet.EventKind{fleet.EventRegistered, fleet.EventOffered, fleet.EventDownloading, fleet.EventFailed} {
		p.event(t, fleet.Event{Device: "kiosk-7", Event: k, Version: "2.0"})
	}
	p.event(t, fleet.Event{Device: "other", Event: fleet.EventInstalled, Version: "2.0"})

	doc := p.page(t, "/clients/kiosk-7", 200)
	facts := map[string]string{}
	doc.Find("dl.facts dt").Each(func(_ int, dt *goquery.Selection) {
		facts[dt.Text()] = strings.Join(strings.Fields(dt.Next().Text()), " ")
	})
	for k, v := range map[string]string{
		"Hostname": "kiosk-7.local", "OS": "linux", "Platform": "debian 12.7", "Kernel": "6.1.0-26-amd64",
		"Architecture": "amd64", "CPU": "Intel(R) Celeron(R) J4125 CPU @ 2.00GHz", "Cores": "4 cores, 4 threads",
		"Memory": "8.0 GiB", "Target version": "2.0", "Detail": "command exited with status 3",
	} {
		if facts[k] != v {
			t.Errorf("fact %q = %q, want %q", k, facts[k], v)
		}
	}
	if got := doc.Find("#install pre.output").Text(); got != "step 1 ok\nstep 2: disk full\n" {
		t.Errorf("failed output = %q", got)
	}
	if got := texts(doc.Find("#install .badge")); !slices.Contains(got, "failed") {
		t.Errorf("install state badges = %v, want failed", got)
	}
	if got := rows(doc.Find("#storage tbody tr")); !slices.Contains(got, "/|ext4|120 GiB|80.0 GiB") ||
		!slices.Contains(got, "eth0|52:54:00:12:34:56|192.168.10.21/24fe80::5054:ff:fe12:3456/64") {
		t.Errorf("disks and interfaces = %q", got)
	}
	// The install is one entry of its steps, newest first, this device's
	// only.
	timeline := texts(doc.Find("#timeline > ol > li > span:nth-child(2) .badge"))
	if got, want := strings.Join(timeline, " "), "failed registered"; got != want {
		t.Errorf("timeline = %q, want %q (newest first, this device only)", got, want)
	}
	if got, want := strings.Join(texts(doc.Find("#timeline ol.steps .name")), " "), "offered downloading failed"; got != want {
		t.Errorf("the install's steps = %q, want %q", got, want)
	}
	form := doc.Find("#install form.offer")
	if action, _ := form.Attr("action"); action != "/clients/kiosk-7/offer" {
		t.Errorf("offer form action = %q", action)
	}
	if m, _ := form.Attr("method"); m != "post" {
		t.Errorf("offer form method = %q, want post", m)
	}
	if _, disabled := form.Find("button").Attr("disabled"); disabled || form.Find("button").Text() != "Offer 2.0 again" {
		t.Errorf("offer button: %q disabled=%v", form.Find("button").Text(), disabled)
	}

	p.page(t, "/clients/nobody", 404)
	p.page(t, "/clients/..%2fx", 404)
}

func TestHostileStringsAreText(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	const (
		script = `<script>alert(1)</script>`
		img    = `"><img src=x onerror=alert(1)>`
	)
	p.catalog(t, fleet.Catalog{Refused: []fleet.Refused{{File: "bad.zip", Reason: script}}})
	p.device(t, "evil", func(d *fleet.Device) {
		kiosk("evil", "1.0", true)(d)
		d.Hostname, d.Hardware.Hostname = script, script
		d.Hardware.CPUModel, d.Hardware.OS, d.Hardware.Platform = img, img, script
		d.Hardware.Disks[0].Mount = script
		d.Hardware.Interfaces[1].Name, d.Hardware.Interfaces[1].Addresses = img, []string{script}
		d.Install = &fleet.Install{Version: "1.1", State: wire.StateFailed, Detail: img, Output: script}
	})
	p.event(t, fleet.Event{Device: "evil", Event: fleet.EventFailed, Version: "1.1", Detail: script})

	for _, path := range []string{"/", "/clients", "/clients?q=script", "/clients/evil", "/history", "/updates"} {
		resp, err := p.client.Get(p.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		doc, _ := goquery.NewDocumentFromReader(strings.NewReader(string(body)))
		// Our one script, from our origin; nothing else runs.
		doc.Find("script").Each(func(_ int, s *goquery.Selection) {
			if src, _ := s.Attr("src"); !strings.HasPrefix(src, "/static/live.js") {
				t.Errorf("%s: a script that is not ours: %s", path, goquery.NewDocumentFromNode(s.Nodes[0]).Text())
			}
		})
		if n := doc.Find("img, [onerror]").Length(); n != 0 {
			t.Errorf("%s: %d injected elements", path, n)
		}
		if !strings.Contains(string(body), "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s: the hostile string is not shown escaped", path)
		}
	}
	doc := p.page(t, "/clients", 200)
	if got := doc.Find("#device-evil td.host .hostname").Text(); got != script {
		t.Errorf("hostname cell = %q, want the characters %q", got, script)
	}
	if got := strings.TrimSpace(doc.Find("#device-evil td").Eq(3).Contents().First().Text()); got != img {
		t.Errorf("cpu cell = %q, want the characters %q", got, img)
	}
}

func TestSecurityHeaders(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	for _, path := range []string{"/", "/clients", "/login", "/static/app.css", "/api/v1/devices"} {
		resp, err := p.client.Get(p.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
	}
	// No inline script or style that the policy would block: every page
	// must work under it.
	for _, path := range []string{"/", "/clients", "/history", "/updates", "/downloads"} {
		doc := p.page(t, path, 200)
		doc.Find("script:not([src]), style, [style]").Each(func(_ int, s *goquery.Selection) {
			t.Errorf("%s: inline script or style in <%s>", path, goquery.NodeName(s))
		})
		doc.Find("*").Each(func(_ int, s *goquery.Selection) {
			for _, a := range s.Nodes[0].Attr {
				if strings.HasPrefix(a.Key, "on") {
					t.Errorf("%s: inline handler %s on <%s>", path, a.Key, goquery.NodeName(s))
				}
			}
		})
	}
	if resp, err := http.Get(p.srv.URL + "/static/"); err != nil || resp.StatusCode != 404 {
		t.Errorf("the static folder is listed: %v", err)
	}
	resp, err := http.Get(p.srv.URL + "/static/live.js?v=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.Contains(ct, "javascript") || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("live.js: %s, %q, cache %q", resp.Status, ct, resp.Header.Get("Cache-Control"))
	}
}
