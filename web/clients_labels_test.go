package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
	"github.com/thinfleet/thinfleet/wire"
)

// group saves a group through the store, as the API does.
func (p *pageTest) group(t testing.TB, g fleet.Group) {
	t.Helper()
	if _, err := p.store.UpdateGroup(context.Background(), g.Name, func(s *fleet.Group) error { *s = g; return nil }); err != nil {
		t.Fatal(err)
	}
}

// labelledFleet is five devices in two sites, some tagged by an operator,
// one pinned by hand and one by its group:
//
//	berlin-1  site=berlin ring=canary (tag)            groups canary, berlin (beta)
//	berlin-2  site=berlin                              group berlin (beta), pinned to 1.0 by hand
//	munich-1  site=munich, tag site=berlin overrides   groups berlin (beta), frozen (pin 1.1)
//	munich-2  site=munich                              no group
//	bare      no labels
func labelledFleet(t testing.TB, p *pageTest) {
	t.Helper()
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("2.0", "u-2.0.zip"), release("1.1", "u-1.1.zip"), release("1.0", "u-1.0.zip")}, Target: "2.0"})
	set := func(id string, labels, tags fleet.Labels, pin *fleet.Pin) {
		p.device(t, id, func(d *fleet.Device) {
			kiosk(id, "1.0", true)(d)
			d.Labels, d.Tags, d.Pin = labels, tags, pin
		})
	}
	set("berlin-1", fleet.Labels{"site": "berlin"}, fleet.Labels{"ring": "canary"}, nil)
	set("berlin-2", fleet.Labels{"site": "berlin"}, nil,
		&fleet.Pin{Version: "1.0", Reason: "till the trade fair is over", By: "admin (dashboard) from 10.0.0.9", Time: time.Now().Add(-time.Hour)})
	set("munich-1", fleet.Labels{"site": "munich"}, fleet.Labels{"site": "berlin", "frozen": ""}, nil)
	set("munich-2", fleet.Labels{"site": "munich"}, nil, nil)
	set("bare", nil, nil, nil)
	p.group(t, fleet.Group{Name: "canary", Selector: fleet.Selector{Match: fleet.Labels{"ring": "canary"}}})
	p.group(t, fleet.Group{Name: "berlin", Selector: fleet.Selector{Match: fleet.Labels{"site": "berlin"}}, Channel: "beta"})
	p.group(t, fleet.Group{Name: "frozen", Selector: fleet.Selector{Match: fleet.Labels{"frozen": ""}},
		Pin: &fleet.Pin{Version: "1.1", Reason: "kiosk vendor asks", By: "admin (api) from 10.0.0.7"}})
}

func TestClientsLabelsGroupsPins(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	labelledFleet(t, p)

	doc := p.page(t, "/clients", 200)
	row := func(id string) *goquery.Selection { return doc.Find("#device-" + id) }
	for id, want := range map[string]struct{ labels, tags, groups, pin, why string }{
		"berlin-1": {"site=berlin", "ring=canary", "berlin, canary · beta", "", ""},
		"berlin-2": {"site=berlin", "", "berlin · beta", "pinned to 1.0", "till the trade fair is over · by admin (dashboard) from 10.0.0.9"},
		// A tag wins over the label of the same key; a tag may have no
		// value.
		"munich-1": {"", "frozen site=berlin", "berlin, frozen · beta", "pinned to 1.1", "kiosk vendor asks · pin of group frozen"},
		"munich-2": {"site=munich", "", "", "", ""},
		"bare":     {"", "", "", "", ""},
	} {
		r := row(id)
		got := struct{ labels, tags, groups, pin, why string }{
			strings.Join(texts(r.Find(".chip:not(.tag)")), " "), strings.Join(texts(r.Find(".chip.tag")), " "),
			strings.Join(strings.Fields(strings.TrimPrefix(strings.TrimSpace(r.Find(".groups").Text()), "Groups:")), " "),
			strings.TrimSpace(r.Find(".badge.pin").Text()), strings.TrimSpace(r.Find("td.ver .why").Text()),
		}
		if got != want {
			t.Errorf("%s: labels %q, tags %q, groups %q, pin %q (%q)\nwant labels %q, tags %q, groups %q, pin %q (%q)", id,
				got.labels, got.tags, got.groups, got.pin, got.why, want.labels, want.tags, want.groups, want.pin, want.why)
		}
	}
	if tip := row("berlin-1").Find(".chip.tag").AttrOr("title", ""); !strings.Contains(tip, "operator") {
		t.Errorf("a tag's title = %q, want it to say an operator set it", tip)
	}

	ids := func(doc *goquery.Document) string { return strings.Join(texts(doc.Find("table.clients td.id a")), " ") }
	for _, tt := range []struct{ query, want, error string }{
		{"?labels=site%3Dberlin", "berlin-1 berlin-2 munich-1", ""},
		{"?labels=site%3Dberlin,ring%3Dcanary", "berlin-1", ""},
		{"?labels=site%3Dmunich", "munich-2", ""}, // munich-1's tag says berlin
		{"?group=berlin", "berlin-1 berlin-2 munich-1", ""},
		{"?group=canary&alive=alive", "berlin-1", ""},
		{"?pinned=1", "berlin-2 munich-1", ""},
		{"?pinned=1&group=frozen", "munich-1", ""},
		{"?labels=site%3D%3Cb%3E", "", `Labels: selector "site=<b>": label site value "<b>"`},
		{"?group=nope", "", "There is no group named nope."},
	} {
		doc := p.page(t, "/clients"+tt.query, 200)
		if got := ids(doc); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.query, got, tt.want)
		}
		msg := strings.TrimSpace(doc.Find("p.error").Text())
		if (tt.error == "") != (msg == "") || !strings.Contains(msg, tt.error) {
			t.Errorf("%s: error %q, want %q", tt.query, msg, tt.error)
		}
	}
	// The group filter lists every group; a filter keeps what was asked.
	doc = p.page(t, "/clients?group=frozen&labels=site%3Dberlin&pinned=1", 200)
	if got := strings.Join(texts(doc.Find(`select[name="group"] option`)), " "); got != "any berlin canary frozen" {
		t.Errorf("group options %q", got)
	}
	if v := doc.Find(`input[name="labels"]`).AttrOr("value", ""); v != "site=berlin" {
		t.Errorf("labels field %q", v)
	}
	if doc.Find(`input[name="pinned"][checked]`).Length() != 1 || doc.Find(`select[name="group"] option[selected]`).Text() != "frozen" {
		t.Error("the filters do not show what was asked")
	}
	// A sort link keeps the new filters.
	if href := doc.Find(`th a`).First().AttrOr("href", ""); !strings.Contains(href, "group=frozen") || !strings.Contains(href, "labels=site%3Dberlin") || !strings.Contains(href, "pinned=1") {
		t.Errorf("sort link %q loses the filters", href)
	}
}

func TestClientPageLabelsGroupsPin(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	labelledFleet(t, p)
	facts := func(id string) map[string]string {
		doc := p.page(t, "/clients/"+id, 200)
		out := map[string]string{}
		doc.Find("#summary dl.facts dt").Each(func(_ int, dt *goquery.Selection) {
			out[dt.Text()] = strings.Join(strings.Fields(dt.Next().Text()), " ")
		})
		return out
	}
	for id, want := range map[string]map[string]string{
		"berlin-2": {"Labels": "site=berlin", "Groups": "berlin", "Channel": "beta",
			"Pin": "pinned to 1.0 till the trade fair is over · by admin (dashboard) from 10.0.0.9 since " + pagesClock(time.Now().Add(-time.Hour))},
		"munich-1": {"Labels": "frozen site=berlin", "Groups": "berlin, frozen", "Channel": "beta", "Pin": "pinned to 1.1 kiosk vendor asks · pin of group frozen"},
		"bare":     {"Labels": "none", "Groups": "none", "Channel": "stable", "Pin": "not pinned"},
	} {
		got := facts(id)
		for k, v := range want {
			if k == "Pin" && id == "berlin-2" {
				// The minute may turn between writing and reading.
				if !strings.HasPrefix(got[k], "pinned to 1.0 till the trade fair is over · by admin (dashboard) from 10.0.0.9 since ") {
					t.Errorf("%s: %s = %q", id, k, got[k])
				}
				continue
			}
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", id, k, got[k], v)
			}
		}
	}
}

func pagesClock(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// postBulk posts the Clients page's bulk form as the signed-in browser.
func (p *pageTest) postBulk(t testing.TB, form url.Values) (*http.Response, *goquery.Document) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.srv.URL+"/clients/bulk", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	return resp, doc
}

func TestBulkFormRefusesBadInput(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	labelledFleet(t, p)
	before, err := p.store.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		form url.Values
		want string
	}{
		{"no action", url.Values{"id": {"bare"}}, "Choose an action."},
		{"an unknown action", url.Values{"id": {"bare"}, "action": {"reboot"}}, "Choose an action."},
		{"no device", url.Values{"action": {"unpin"}}, "tick the devices to act on"},
		{"a bad id", url.Values{"action": {"unpin"}, "id": {"../etc"}}, `"../etc" is not a device id`},
		{"no tag", url.Values{"action": {"tag"}, "id": {"bare"}, "tags": {" , "}}, "write the tags to set"},
		{"a bad tag", url.Values{"action": {"tag"}, "id": {"bare"}, "tags": {"ok=1, bad key=2"}}, `label key "bad key"`},
		{"no key", url.Values{"action": {"untag"}, "id": {"bare"}}, "write the keys of the tags to remove"},
		{"no version", url.Values{"action": {"pin"}, "id": {"bare"}, "reason": {"why"}}, "choose the version to pin to"},
		{"all of a broken filter", url.Values{"action": {"unpin"}, "all": {"1"}, "filter": {"labels=site%3D%3Cb%3E"}}, "Nothing done: Labels:"},
		{"all of nothing", url.Values{"action": {"unpin"}, "all": {"1"}, "filter": {"q=nothing-like-this"}}, "no device matches the filters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.form.Set("back", "/clients?labels=site%3Dberlin")
			resp, doc := p.postBulk(t, tt.form)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %s, want 400", resp.Status)
			}
			if got := doc.Find("p.error").Text(); !strings.Contains(got, tt.want) {
				t.Errorf("error %q, want it to say %q", got, tt.want)
			}
			// The page is the one the form was on, its filters kept.
			if v := doc.Find(`input[name="labels"]`).AttrOr("value", ""); v != "site=berlin" {
				t.Errorf("the page shown lost its filter: labels %q", v)
			}
		})
	}
	after, err := p.store.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("%d devices after bad bulk forms, want %d", len(after), len(before))
	}
	for i := range after {
		if after[i].Pin != nil != (before[i].Pin != nil) || after[i].Tags.String() != before[i].Tags.String() {
			t.Errorf("%s changed by a bad bulk form", after[i].ID)
		}
	}

	// A bulk form from another site is refused before anything is read.
	req, _ := http.NewRequest(http.MethodPost, p.srv.URL+"/clients/bulk",
		strings.NewReader(url.Values{"action": {"delete"}, "confirm": {"1"}, "all": {"1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site bulk form: %s, want 403", resp.Status)
	}
}

func TestBulkDeleteAsksFirst(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	labelledFleet(t, p)
	// Every device the filters select, not only the ticked ones: the
	// confirmation lists them, and its form names each.
	resp, doc := p.postBulk(t, url.Values{
		"action": {"delete"}, "all": {"1"}, "id": {"bare"}, "filter": {"group=berlin&alive=alive"},
		"back": {"/clients?group=berlin&alive=alive&sort=-id"},
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("delete without confirm: %s, want 200 and a question", resp.Status)
	}
	if got := strings.Join(texts(doc.Find("section.confirm ul.ids li")), " "); got != "berlin-1 berlin-2 munich-1" {
		t.Errorf("devices to delete %q, want the three of group berlin", got)
	}
	form := doc.Find(`section.confirm form`)
	var hidden []string
	form.Find(`input[type="hidden"]`).Each(func(_ int, s *goquery.Selection) {
		hidden = append(hidden, s.AttrOr("name", "")+"="+s.AttrOr("value", ""))
	})
	slices.Sort(hidden)
	want := []string{"action=delete", "back=/clients?alive=alive&group=berlin&sort=-id", "confirm=1", "id=berlin-1", "id=berlin-2", "id=munich-1"}
	if !slices.Equal(hidden, want) {
		t.Errorf("confirmation form %q\nwant %q", hidden, want)
	}
	if got := strings.TrimSpace(form.Find("button").Text()); got != "Delete 3 devices" {
		t.Errorf("button %q", got)
	}
	if cancel := form.Find("a").AttrOr("href", ""); cancel != "/clients?alive=alive&group=berlin&sort=-id" {
		t.Errorf("cancel goes to %q", cancel)
	}
	for _, id := range []string{"berlin-1", "berlin-2", "munich-1", "bare"} {
		if _, err := p.store.Device(context.Background(), id); err != nil {
			t.Errorf("%s gone before the delete was confirmed: %v", id, err)
		}
	}

	// A back link elsewhere is not followed.
	_, doc = p.postBulk(t, url.Values{"action": {"delete"}, "id": {"bare"}, "back": {"https://evil.example/clients"}})
	if cancel := doc.Find(`section.confirm form a`).AttrOr("href", ""); cancel != "/clients" {
		t.Errorf("cancel of a foreign back link goes to %q, want /clients", cancel)
	}
}

func TestHistoryPageGroupsInstalls(t *testing.T) {
	p := newPageTest(t, pageOptions{linkKey: []byte("0123456789abcdef")})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	sig := strings.Repeat("5e", 32)
	link := "http://fleet.example:8080/downloads/u-2.0.zip?exp=1800000000&sig=" + sig
	for _, e := range []fleet.Event{
		{Time: t0, Device: "k1", Event: fleet.EventOffered, Version: "2.0", Detail: "offer OFFER1, from 1.0"},
		{Time: t0, Device: "k2", Event: fleet.EventOffered, Version: "2.0", Detail: "offer OFFER2, from 1.0"},
		{Time: t0.Add(1 * time.Second), Device: "k1", Event: fleet.EventDownloading, Version: "2.0"},
		{Time: t0.Add(2 * time.Second), Device: "k2", Event: fleet.EventDownloading, Version: "2.0"},
		{Time: t0.Add(3 * time.Second), Device: "k2", Event: fleet.EventFailed, Version: "2.0", Detail: "download: Get \"" + link + "\": connection refused"},
		{Time: t0.Add(5 * time.Second), Device: "k1", Event: fleet.EventVerifying, Version: "2.0"},
		{Time: t0.Add(6 * time.Second), Device: "k1", Event: fleet.EventInstalling, Version: "2.0"},
		{Time: t0.Add(9 * time.Second), Device: "k1", Event: fleet.EventInstalled, Version: "2.0"},
	} {
		p.event(t, e)
	}
	p.device(t, "k2", func(d *fleet.Device) {
		kiosk("k2", "1.0", true)(d)
		d.Install = &fleet.Install{Version: "2.0", State: wire.StateFailed, Detail: "download: Get \"" + link + "\": connection refused"}
	})
	for _, path := range []string{"/history", "/", "/clients/k2", "/clients/k2?x=1"} {
		resp, err := p.client.Get(p.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), sig) || strings.Contains(string(body), "sig=") {
			t.Errorf("%s shows a signed download link", path)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, p.srv.URL+"/api/v1/history?device=k2", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), sig) || !strings.Contains(string(body), `/downloads/u-2.0.zip\"`) {
		t.Errorf("GET /api/v1/history: %s %s; want the failure without the link's signature", resp.Status, body)
	}

	doc := p.page(t, "/history", 200)
	got := rows(doc.Find("#events tbody tr"))
	for i := range got {
		_, got[i], _ = strings.Cut(got[i], "|") // the time, relative
	}
	want := []string{
		"k1|installed|2.0|offered " + clockOf(t0) + " → downloading " + clockOf(t0.Add(time.Second)) + " → verifying " + clockOf(t0.Add(5*time.Second)) +
			" → installing " + clockOf(t0.Add(6*time.Second)) + " → installed " + clockOf(t0.Add(9*time.Second)) + " from 1.0; took 9s",
		"k2|failed|2.0|offered " + clockOf(t0) + " → downloading " + clockOf(t0.Add(2*time.Second)) + " → failed " + clockOf(t0.Add(3*time.Second)) +
			` download: Get "http://fleet.example:8080/downloads/u-2.0.zip": connection refused output`,
	}
	// The arrows are the stylesheet's; the text has the steps in order.
	for i := range want {
		want[i] = strings.ReplaceAll(want[i], " → ", " ")
	}
	if !slices.Equal(got, want) {
		t.Errorf("history rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if href := doc.Find("a.output-link").AttrOr("href", ""); href != "/clients/k2#install" {
		t.Errorf("the failure's output link = %q", href)
	}
}

func clockOf(t time.Time) string { return t.UTC().Format("15:04:05") }

func TestBulkActionsFromClients(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	labelledFleet(t, p)
	ctx := context.Background()
	dev := func(id string) fleet.Device {
		t.Helper()
		d, err := p.store.Device(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	back := "/clients?labels=site%3Dberlin&sort=-id"
	redirected := func(resp *http.Response, action string, n int) {
		t.Helper()
		loc := resp.Header.Get("Location")
		want := "/clients?bulk=" + action + "&done=" + fmt.Sprint(n) + "&labels=site%3Dberlin&sort=-id"
		if resp.StatusCode != http.StatusSeeOther || loc != want {
			t.Fatalf("%s: %s to %q, want 303 to %q", action, resp.Status, loc, want)
		}
	}

	// Tag two ticked devices: both get the tags, each is audited once.
	resp, _ := p.postBulk(t, url.Values{"action": {"tag"}, "id": {"bare", "munich-2"}, "tags": {"ring=pilot, floor=2"}, "back": {back}})
	redirected(resp, "tag", 2)
	for _, id := range []string{"bare", "munich-2"} {
		if got := dev(id).Tags.String(); got != "floor=2,ring=pilot" {
			t.Errorf("%s tags %q after the bulk tag", id, got)
		}
		wantAudit(t, p.audited(t), "device.tag", id, "bulk", "dashboard")
	}
	if got := dev("berlin-2").Tags.String(); got != "" {
		t.Errorf("an unticked device was tagged: %q", got)
	}
	// The page it goes back to says so, and shows the tags.
	doc := p.page(t, "/clients?bulk=tag&done=2", 200)
	if got := strings.Join(strings.Fields(doc.Find(".bulk-result").Text()), " "); got != "Tagged 2 devices." {
		t.Errorf("notice %q", got)
	}
	if got := strings.Join(texts(doc.Find("#device-bare .chip.tag")), " "); got != "floor=2 ring=pilot" {
		t.Errorf("bare's tags on Clients: %q", got)
	}

	// Untag every device the filters select, not only those on the page.
	resp, _ = p.postBulk(t, url.Values{"action": {"untag"}, "all": {"1"}, "filter": {"labels=ring%3Dpilot"}, "keys": {"floor"}, "back": {back}})
	redirected(resp, "untag", 2)
	if got := dev("munich-2").Tags.String(); got != "ring=pilot" {
		t.Errorf("munich-2 tags %q after untag floor", got)
	}

	// Pin, with a reason; the pin says who did it.
	resp, _ = p.postBulk(t, url.Values{"action": {"pin"}, "id": {"bare"}, "version": {"1.1"}, "reason": {"the vendor asks"}, "back": {back}})
	redirected(resp, "pin", 1)
	if pin := dev("bare").Pin; pin == nil || pin.Version != "1.1" || pin.Reason != "the vendor asks" || !strings.Contains(pin.By, "dashboard") {
		t.Errorf("bare's pin %+v, want 1.1 for the vendor, by the dashboard", pin)
	}
	wantAudit(t, p.audited(t), "device.pin", "bare", "bulk", "dashboard")
	// A version the catalog does not have: nothing is done, and the page
	// says why.
	resp, doc = p.postBulk(t, url.Values{"action": {"pin"}, "id": {"bare", "munich-2"}, "version": {"9.9"}, "back": {back}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(doc.Find("p.error").Text(), "9.9") {
		t.Errorf("pin to 9.9: %s, %q", resp.Status, doc.Find("p.error").Text())
	}
	if dev("munich-2").Pin != nil || dev("bare").Pin.Version != "1.1" {
		t.Error("a refused pin changed a device")
	}

	// Unpin a pinned device and an unknown one: one done, one failed,
	// and the page lists the failure.
	resp, doc = p.postBulk(t, url.Values{"action": {"unpin"}, "id": {"bare", "gone-1"}, "back": {back}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("unpin with a failure: %s, want 200 and the page", resp.Status)
	}
	if got := strings.Join(strings.Fields(doc.Find(".bulk-result p").Text()), " "); got != "Unpinned 1 device. 1 device failed." {
		t.Errorf("result %q", got)
	}
	if got := texts(doc.Find(".bulk-result li.failed")); len(got) != 1 || !strings.HasPrefix(got[0], "gone-1: no device") {
		t.Errorf("failures %q", got)
	}
	if dev("bare").Pin != nil {
		t.Error("bare still pinned")
	}
	// That page answers the POST: it does not follow along live (its
	// URL takes only a form).
	if live := doc.Find("body").AttrOr("data-live", ""); live != "" {
		t.Errorf("the page of a bulk result follows along live: %q", live)
	}

	// Offer again: a pinned device is skipped, not failed.
	resp, doc = p.postBulk(t, url.Values{"action": {"offer-again"}, "id": {"berlin-1", "berlin-2"}, "back": {back}})
	if got := strings.Join(strings.Fields(doc.Find(".bulk-result p").Text()), " "); resp.StatusCode != http.StatusOK || got != "Offered the target again to 1 device. 1 device skipped." {
		t.Errorf("offer again: %s, %q", resp.Status, got)
	}
	if got := texts(doc.Find(".bulk-result li.skipped")); len(got) != 1 || !strings.HasPrefix(got[0], "berlin-2: skipped, the device is pinned") {
		t.Errorf("skipped %q", got)
	}
	if doc.Find(".bulk-result.error").Length() != 0 {
		t.Error("a skipped device shows as an error")
	}
	wantAudit(t, p.audited(t), "device.offer-again", "berlin-1", "bulk", "dashboard")

	// Delete, confirmed: gone, and audited.
	resp, _ = p.postBulk(t, url.Values{"action": {"delete"}, "confirm": {"1"}, "id": {"munich-2"}, "back": {back}})
	redirected(resp, "delete", 1)
	if _, err := p.store.Device(ctx, "munich-2"); err == nil {
		t.Error("munich-2 still there after a confirmed delete")
	}
	wantAudit(t, p.audited(t), "device.delete", "munich-2", "bulk", "dashboard")
}

func TestClientPagePlan(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	labelledFleet(t, p)
	// A paused rollout of 3.0, the target, with munich-2 in its first
	// wave: the release is held back from everyone, for a reason.
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("3.0", "u-3.0.zip"), release("2.0", "u-2.0.zip"), release("1.1", "u-1.1.zip"), release("1.0", "u-1.0.zip")}, Target: "3.0"})
	if err := p.store.CreateRollout(context.Background(), fleet.Rollout{
		ID: "canary-3", Version: "3.0", State: fleet.RolloutPaused, Reason: "2 of 5 failed in wave canary",
		Waves: []fleet.Wave{{Name: "canary", Percent: 10}, {Name: "all", Percent: 100}}, Members: map[string]fleet.Member{"munich-2": {Wave: 0, From: "1.0"}},
		Created: time.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	paused := "rollout canary-3 paused: 2 of 5 failed in wave canary"
	for id, want := range map[string]struct{ plan, rollout, hold, offer string }{
		"bare":     {"3.0 not offered " + paused + " · rollout canary-3", "/rollouts/canary-3", "not offered " + paused, "Nothing to offer: " + paused + "."},
		"munich-2": {"3.0 not offered " + paused + " · rollout canary-3", "/rollouts/canary-3", "not offered " + paused, "Nothing to offer: " + paused + "."},
		"berlin-2": {"1.0 installed pinned", "", "", "The device is pinned: it is offered the version of its pin; unpin it to offer another."},
		"munich-1": {"1.1 offered pinned pinned to 1.1 by group frozen", "", "", "The device is pinned: it is offered the version of its pin; unpin it to offer another."},
	} {
		doc := p.page(t, "/clients/"+id, 200)
		plan := doc.Find("#summary dd.plan")
		if got := strings.Join(strings.Fields(plan.Text()), " "); got != want.plan {
			t.Errorf("%s: planned %q, want %q", id, got, want.plan)
		}
		if got := plan.Find("a").AttrOr("href", ""); got != want.rollout {
			t.Errorf("%s: rollout link %q, want %q", id, got, want.rollout)
		}
		if got := strings.Join(strings.Fields(doc.Find("#install p.hold").Text()), " "); got != want.hold {
			t.Errorf("%s: install says %q, want %q", id, got, want.hold)
		}
		form := doc.Find("#install form.offer")
		if got := strings.TrimSpace(form.Find(".muted").Text()); form.Find("button[disabled]").Length() != 1 || got != want.offer {
			t.Errorf("%s: offer again %q (disabled: %d), want it disabled: %q", id, got, form.Find("button[disabled]").Length(), want.offer)
		}
	}
	// Without the rollout, 3.0 is what every unpinned device is offered;
	// the one that runs it has nothing to install.
	if err := p.store.DeleteRollout(context.Background(), "canary-3"); err != nil {
		t.Fatal(err)
	}
	p.device(t, "runs-3", kiosk("runs-3", "3.0", true))
	poll.Eventually(t, 10*time.Second, "the plans without the rollout", func() error {
		for id, want := range map[string]string{"bare": "3.0 offered the catalog's target", "runs-3": "3.0 installed"} {
			if got := strings.Join(strings.Fields(p.page(t, "/clients/"+id, 200).Find("#summary dd.plan").Text()), " "); got != want {
				return fmt.Errorf("%s: planned %q, want %q", id, got, want)
			}
		}
		if got := strings.TrimSpace(p.page(t, "/clients/bare", 200).Find("#install form.offer button:not([disabled])").Text()); got != "Offer 3.0 again" {
			return fmt.Errorf("bare's offer button %q", got)
		}
		return nil
	})
}

func TestBulkApproveWaitingDevices(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	now := time.Now()
	for _, id := range []string{"new-1", "new-2", "new-3"} {
		p.enroll(t, id, id+".local", fleet.EnrollPending, now.Add(-time.Minute))
	}
	// Each waiting device can be ticked for the bulk bar.
	doc := p.page(t, "/clients", 200)
	if got := strings.Join(texts(doc.Find(`#pending input[name="id"][form="bulk"]`).Parent().Next()), " "); got != "new-1 new-2 new-3" {
		t.Errorf("waiting devices with a box: %q", got)
	}
	resp, _ := p.postBulk(t, url.Values{"action": {"approve"}, "id": {"new-1", "new-3"}, "back": {"/clients"}})
	if loc := resp.Header.Get("Location"); loc != "/clients?bulk=approve&done=2" {
		t.Errorf("approve answered %s %q", resp.Status, loc)
	}
	for id, want := range map[string]fleet.EnrollState{"new-1": fleet.EnrollApproved, "new-2": fleet.EnrollPending, "new-3": fleet.EnrollApproved} {
		if got := p.enrollState(t, id); got != want {
			t.Errorf("%s is %s, want %s", id, got, want)
		}
	}
	wantAudit(t, p.audited(t), "device.approve", "new-3", "bulk", "dashboard")
}

func TestOverviewShowsTenWholeInstalls(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	t0 := time.Now().Add(-time.Hour)
	// Twelve installs of five steps each, one after another.
	for i := range 12 {
		id := fmt.Sprintf("k%02d", i)
		for j, k := range []fleet.EventKind{fleet.EventOffered, fleet.EventDownloading, fleet.EventVerifying, fleet.EventInstalling, fleet.EventInstalled} {
			p.event(t, fleet.Event{Time: t0.Add(time.Duration(i*10+j) * time.Second), Device: id, Event: k, Version: "2.0", Detail: "offer O" + id + ", from 1.0"})
		}
	}
	doc := p.page(t, "/", 200)
	rows := doc.Find("#recent tbody tr")
	if rows.Length() != 10 {
		t.Fatalf("%d rows of last events, want 10", rows.Length())
	}
	rows.Each(func(i int, tr *goquery.Selection) {
		id := fmt.Sprintf("k%02d", 11-i)
		if got := tr.Find("td.id").Text(); got != id {
			t.Errorf("row %d is %s, want %s", i, got, id)
		}
		if got := strings.Join(texts(tr.Find("ol.steps .name")), " "); got != "offered downloading verifying installing installed" {
			t.Errorf("row %d (%s) steps %q, want all five", i, id, got)
		}
	})
}
