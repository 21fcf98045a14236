package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
	"github.com/thinfleet/thinfleet/web/pages"
	"github.com/thinfleet/thinfleet/wire"
)

// rollout writes a rollout as an operator created it, then fn's changes
// as the rollout service makes them.
func (p *pageTest) rollout(t testing.TB, spec fleet.RolloutSpec, created time.Time, fn func(r *fleet.Rollout)) {
	t.Helper()
	ro, err := fleet.NewRollout(spec, "admin (api) from 127.0.0.1", created)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.store.CreateRollout(ctx, ro); err != nil {
		t.Fatal(err)
	}
	if fn != nil {
		if _, err := p.store.UpdateRollout(ctx, spec.ID, func(r *fleet.Rollout) error { fn(r); return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

func (p *pageTest) storedRollout(t testing.TB, id string) fleet.Rollout {
	t.Helper()
	ro, err := p.store.Rollout(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return ro
}

// canaryFleet is a rollout of 1.3.0 to ten devices, paused by itself in
// its canary wave: k00 installed it, k01 failed, k02 is downloading it,
// k03 is pinned; the other six wait in the wave after.
func canaryFleet(t *testing.T, p *pageTest) {
	t.Helper()
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("1.3.1", "u-1.3.1.zip"), release("1.3.0", "u-1.3.0.zip"), release("1.2.0", "u-1.2.0.zip")}, Target: "1.3.0"})
	members := map[string]fleet.Member{}
	for i := range 10 {
		id := fmt.Sprintf("k%02d", i)
		wave := 1
		if i < 4 {
			wave = 0
		}
		members[id] = fleet.Member{Wave: wave, From: "1.2.0"}
		p.device(t, id, kiosk(id, "1.2.0", true))
	}
	p.device(t, "k00", func(d *fleet.Device) { d.Version = "1.3.0" })
	p.device(t, "k01", func(d *fleet.Device) {
		d.Install = &fleet.Install{Version: "1.3.0", State: wire.StateFailed, Detail: "exit status 3: disk full"}
	})
	p.device(t, "k02", func(d *fleet.Device) {
		d.Install = &fleet.Install{Version: "1.3.0", State: wire.StateDownloading, BytesDone: 1 << 20, BytesTotal: 4 << 20}
	})
	p.device(t, "k03", func(d *fleet.Device) { d.Pin = &fleet.Pin{Version: "1.2.0", Reason: "till in use"} })
	start := time.Now().Add(-10 * time.Minute)
	p.rollout(t, fleet.RolloutSpec{ID: "canary-130", Version: "1.3.0", Waves: []fleet.Wave{
		{Name: "canary", Percent: 40, SuccessPercent: 90, ErrorPercent: 20},
		{Name: "all", Percent: 100, SuccessPercent: 90, ErrorPercent: 20},
	}}, start, func(r *fleet.Rollout) {
		r.Members = members
		r.Waves[0].Counts = fleet.WaveCounts{Devices: 4, Succeeded: 1, Failed: 1, InProgress: 1, Waiting: 1}
		r.Waves[1].Counts = fleet.WaveCounts{Devices: 6, Waiting: 6}
		r.State, r.Reason = fleet.RolloutPaused, "wave canary: 1 of 4 devices failed (25%), at or above its error threshold of 20%"
		for i := range 5 {
			r.Samples = append(r.Samples, fleet.Sample{Time: start.Add(time.Duration(i) * 2 * time.Minute),
				WaveCounts: fleet.WaveCounts{Devices: 10, Succeeded: i / 4, Failed: i / 3, InProgress: min(i, 1), Waiting: 10 - i/4 - i/3 - min(i, 1)}})
		}
		r.Updated = time.Now()
	})
}

func TestRolloutsPage(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	canaryFleet(t, p)
	p.rollout(t, fleet.RolloutSpec{ID: "older", Version: "1.2.0", Selector: fleet.Selector{Match: fleet.Labels{"site": "berlin"}}}, time.Now().Add(-48*time.Hour), func(r *fleet.Rollout) {
		r.State, r.Reason, r.Wave = fleet.RolloutCompleted, "every wave done", 2
		r.Waves[2].Counts = fleet.WaveCounts{Devices: 8, Succeeded: 8}
	})

	var doc *goquery.Document
	poll.Eventually(t, 10*time.Second, "both rollouts listed", func() error {
		doc = p.page(t, "/rollouts", 200)
		if n := doc.Find("table.rollouts tbody tr").Length(); n != 2 {
			return fmt.Errorf("%d rows", n)
		}
		return nil
	})
	got := rows(doc.Find("table.rollouts tbody tr"))
	want := []string{
		"canary-130 all devices|paused wave canary: 1 of 4 devices failed (25%), at or above its error threshold of 20%|1.3.0|1 of 10 · 10 %|1|1|1|7|wave 1 of 2 (canary)|10 min ago by admin (api) from 127.0.0.1",
		"older devices with site=berlin|completed every wave done|1.2.0|8 of 8 · 100 %|8|0|0|0|all 3 waves done|2 d ago by admin (api) from 127.0.0.1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if href, _ := doc.Find("#rollout-canary-130 td.id a").Attr("href"); href != "/rollouts/canary-130" {
		t.Errorf("link %q", href)
	}
	// The bar: one part per kind of device, as wide as its share.
	var parts []string
	doc.Find("#rollout-canary-130 svg.rollout-bar rect").Each(func(_ int, r *goquery.Selection) {
		c, _ := r.Attr("class")
		w, _ := r.Attr("width")
		parts = append(parts, c+" "+w)
	})
	if want := []string{"rest 100", "succeeded 10.00", "failed 10.00", "progress 10.00"}; !slices.Equal(parts, want) {
		t.Errorf("progress bar %q, want %q", parts, want)
	}
	if href, _ := doc.Find("a.button").Attr("href"); href != "/rollouts/new" {
		t.Errorf("New rollout links %q", href)
	}
	if live, _ := doc.Find("body").Attr("data-live"); !strings.Contains(live, "topics=rollouts") {
		t.Errorf("the page does not hear rollout changes: %q", live)
	}
	if cur := doc.Find(`nav a[aria-current="page"]`).Text(); cur != "Rollouts" {
		t.Errorf("nav shows %q as the current page", cur)
	}
}

func TestRolloutPage(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	canaryFleet(t, p)

	var doc *goquery.Document
	poll.Eventually(t, 10*time.Second, "the rollout's page", func() error {
		resp, err := p.client.Get(p.srv.URL + "/rollouts/canary-130")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s", resp.Status)
		}
		doc = p.page(t, "/rollouts/canary-130", 200)
		if n := doc.Find("table.members tbody tr").Length(); n != 10 {
			return fmt.Errorf("%d devices listed", n)
		}
		return nil
	})
	if got := strings.Join(strings.Fields(doc.Find("#summary .alert").Text()), " "); got != "Paused. wave canary: 1 of 4 devices failed (25%), at or above its error threshold of 20%" {
		t.Errorf("pause reason %q", got)
	}
	if got := strings.Join(strings.Fields(doc.Find("#summary .progress-line").Text()), " "); got != "10 % of 10 devices run 1.3.0 1 succeeded 1 failed 1 in progress 7 waiting" {
		t.Errorf("progress %q", got)
	}
	if got := texts(doc.Find("#waves li.wave .wave-head")); strings.Join(got, "\n") != "canary open 40% of the devices · 4 devices\nall not open yet 100% of the devices · 6 devices" {
		t.Errorf("waves %q", got)
	}
	if got := texts(doc.Find("#wave-0 .thresholds")); len(got) != 1 || got[0] != "next wave at 90% succeeded · pauses at 20% failed" {
		t.Errorf("thresholds %q", got)
	}
	if got := texts(doc.Find("#wave-0 .counts")); len(got) != 1 || got[0] != "1 succeeded 1 failed 1 in progress 1 waiting" {
		t.Errorf("canary counts %q", got)
	}
	// The chart: four stacked bands, each a closed polygon over every
	// sample and the present.
	polys := doc.Find("#chart svg.area-chart polygon")
	if polys.Length() != 4 {
		t.Fatalf("%d chart bands, want 4", polys.Length())
	}
	polys.Each(func(_ int, s *goquery.Selection) {
		pts, _ := s.Attr("points")
		if n := len(strings.Fields(pts)); n != 12 {
			t.Errorf("band %s: %d points, want 12 (6 times, top and bottom)", s.AttrOr("class", ""), n)
		}
	})
	if got := texts(doc.Find("#chart .legend .key")); strings.Join(got, ",") != "succeeded,failed,in progress,waiting" {
		t.Errorf("legend %q", got)
	}
	// Devices: failed first, then in progress, waiting (by wave), pinned, succeeded.
	got := rows(doc.Find("table.members tbody tr"))
	want := []string{
		"k01|canary|failed|1.2.0|1.2.0|exit status 3: disk full",
		"k02|canary|in progress|1.2.0|1.2.0|1.3.0 downloading 1.0 MiB of 4.0 MiB · 25 %25 %", // the bar's own text follows,
		"k04|all|waiting|1.2.0|1.2.0|its wave is not open yet",
	}
	if strings.Join(got[:3], "\n") != strings.Join(want, "\n") {
		t.Errorf("first devices:\n%s\nwant:\n%s", strings.Join(got[:3], "\n"), strings.Join(want, "\n"))
	}
	states := map[string]string{}
	for _, r := range got {
		f := strings.Split(r, "|")
		states[f[0]] = f[2]
	}
	if states["k00"] != "succeeded" || states["k03"] != "pinned" || states["k09"] != "waiting" {
		t.Errorf("states %v", states)
	}
	if d := doc.Find("#member-k03 td.wrap").Text(); strings.TrimSpace(d) != "pinned to 1.2.0: till in use" {
		t.Errorf("pinned device's detail %q", d)
	}
	// A paused rollout offers resume, not pause; a release change lists
	// the other versions.
	for id, want := range map[string]int{"resume": 1, "pause": 0, "abort": 1, "rollback": 1, "delete": 0, "change-release": 1} {
		if n := doc.Find("#actions #" + id).Length(); n != want {
			t.Errorf("%d %s buttons, want %d", n, id, want)
		}
	}
	if got := texts(doc.Find("#release-version option")); strings.Join(got, ",") != "1.3.1,1.2.0" {
		t.Errorf("release choices %q", got)
	}
	if live, _ := doc.Find("body").Attr("data-live"); !strings.Contains(live, "rollouts%2Cdevices%2Ccatalog") {
		t.Errorf("the page does not hear rollout and device changes: %q", live)
	}

	// The filter, and one page at a time.
	doc = p.page(t, "/rollouts/canary-130?state=waiting", 200)
	if got := texts(doc.Find("table.members tbody td.id")); strings.Join(got, " ") != "k04 k05 k06 k07 k08 k09" {
		t.Errorf("waiting devices %q", got)
	}
	if got := texts(doc.Find(`select[name="state"] option[selected]`)); len(got) != 1 || got[0] != "waiting (6)" {
		t.Errorf("selected filter %q", got)
	}

	p.page(t, "/rollouts/nope", 404)
}

func TestRolloutPageMembersPaged(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	members := map[string]fleet.Member{}
	for i := range pages.MembersPer + 7 {
		members[fmt.Sprintf("d%03d", i)] = fleet.Member{Wave: 0}
	}
	p.rollout(t, fleet.RolloutSpec{ID: "big", Version: "2.0"}, time.Now(), func(r *fleet.Rollout) { r.Members = members })
	var doc *goquery.Document
	poll.Eventually(t, 10*time.Second, "the rollout's page", func() error {
		resp, err := p.client.Get(p.srv.URL + "/rollouts/big?page=2")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	})
	doc = p.page(t, "/rollouts/big?page=2", 200)
	if got := texts(doc.Find("table.members tbody td.id")); len(got) != 7 || got[0] != "d050" {
		t.Errorf("page 2: %q", got)
	}
	if got := strings.Join(strings.Fields(doc.Find("nav.pager span").Text()), " "); got != "page 2 of 2 · 57 devices" {
		t.Errorf("pager %q", got)
	}
	// Devices gone from the fleet are listed as such.
	if got := texts(doc.Find("table.members tbody td.member-state")); got[0] != "gone" {
		t.Errorf("an unknown device's state %q", got[0])
	}
}

// TestRolloutPageActions drives every action from the page's forms: each
// goes back to the page with a notice and is in the audit log; the
// destructive ones need their box ticked.
func TestRolloutPageActions(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("1.3.1", "u-1.3.1.zip"), release("1.3.0", "u-1.3.0.zip")}, Target: "1.3.0"})
	p.rollout(t, fleet.RolloutSpec{ID: "r1", Version: "1.3.0"}, time.Now(), nil)

	steps := []struct {
		action string
		form   url.Values
		status int
		state  fleet.RolloutState
		text   string // on the page it leads to
	}{
		{"resume", nil, 409, fleet.RolloutRunning, "Nothing changed: resume rollout r1: it is running"},
		{"pause", url.Values{"reason": {"lunch"}}, 303, fleet.RolloutPaused, "Paused: nothing more is offered until you resume."},
		{"release", url.Values{"version": {"1.3.1"}}, 303, fleet.RolloutPaused, "Release changed"},
		{"resume", nil, 303, fleet.RolloutRunning, "Resumed"},
		{"abort", nil, 400, fleet.RolloutRunning, "Nothing aborted: tick the box"},
		{"delete", url.Values{"confirm": {"yes"}}, 409, fleet.RolloutRunning, "Nothing deleted: delete rollout r1: it is running; abort it first"},
		{"abort", url.Values{"confirm": {"yes"}}, 303, fleet.RolloutAborted, "Aborted"},
		{"rollback", nil, 400, fleet.RolloutAborted, "Nothing rolled back: tick the box"},
		{"rollback", url.Values{"confirm": {"yes"}}, 303, fleet.RolloutRolledBack, "Rolling back"},
	}
	for _, s := range steps {
		resp, body := p.post(t, p.client, "/rollouts/r1/"+s.action, s.form, nil)
		if resp.StatusCode != s.status {
			t.Fatalf("%s %v: %s, want %d; body %.300s", s.action, s.form, resp.Status, s.status, body)
		}
		if got := p.storedRollout(t, "r1").State; got != s.state {
			t.Errorf("after %s %v: %s, want %s", s.action, s.form, got, s.state)
		}
		if s.status == 303 {
			loc := resp.Header.Get("Location")
			if !strings.HasPrefix(loc, "/rollouts/r1?notice=") {
				t.Fatalf("%s leads to %q", s.action, loc)
			}
			// The page it leads to shows what was done, at once.
			doc := p.page(t, loc, 200)
			body = doc.Find("main").Text()
			if got := doc.Find("#summary .badge").First().Text(); got != pages.StateWord(s.state) {
				t.Errorf("after %s the page shows %q, want %q", s.action, got, s.state)
			}
		}
		if !strings.Contains(strings.Join(strings.Fields(body), " "), s.text) {
			t.Errorf("after %s %v the page does not say %q:\n%.600s", s.action, s.form, s.text, body)
		}
	}
	if got := p.storedRollout(t, "r1"); got.Version != "1.3.1" {
		t.Errorf("release %s, want 1.3.1", got.Version)
	}
	resp, _ := p.post(t, p.client, "/rollouts/r1/delete", url.Values{"confirm": {"yes"}}, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != 303 || loc != "/rollouts?notice=rollout-deleted" {
		t.Fatalf("delete: %s to %q", resp.Status, loc)
	}
	if _, err := p.store.Rollout(context.Background(), "r1"); err == nil {
		t.Error("the rollout is still stored after the delete")
	}
	if doc := p.page(t, "/rollouts?notice=rollout-deleted", 200); doc.Find("#rollout-r1").Length() != 0 || doc.Find(".notice").Text() != "Rollout deleted." {
		t.Errorf("the list after the delete: %q", doc.Find("main").Text())
	}

	es, _, err := p.store.AuditPage(context.Background(), 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range slices.Backward(es) {
		if !strings.HasPrefix(e.Action, "rollout.") {
			continue // the sign-in
		}
		got = append(got, e.Action+" "+e.Detail)
		if !strings.HasPrefix(e.Who, "admin (dashboard) from ") {
			t.Errorf("%s by %q", e.Action, e.Who)
		}
	}
	want := []string{"rollout.pause lunch", "rollout.release 1.3.0 → 1.3.1", "rollout.resume ",
		"rollout.abort aborted by an operator (dashboard)", "rollout.rollback rolled back by an operator (dashboard)",
		"rollout.delete rolled_back, version 1.3.1"}
	if !slices.Equal(got, want) {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Another site's page cannot act with the operator's session.
	p.rollout(t, fleet.RolloutSpec{ID: "r2", Version: "1.3.0"}, time.Now(), nil)
	resp, _ = p.post(t, p.client, "/rollouts/r2/pause", nil, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site pause: %s, want 403", resp.Status)
	}
	if got := p.storedRollout(t, "r2").State; got != fleet.RolloutRunning {
		t.Errorf("a cross-site form paused the rollout: %s", got)
	}
	// Without a session: the sign-in page, nothing done.
	resp, _ = p.post(t, newClient(), "/rollouts/r2/pause", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("pause without a session: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	if got := p.storedRollout(t, "r2").State; got != fleet.RolloutRunning {
		t.Errorf("a request without a session paused the rollout: %s", got)
	}
}

func TestNewRolloutForm(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("1.3.1", "u-1.3.1.zip"), release("1.3.0", "u-1.3.0.zip")}, Target: "1.3.0"})
	if _, err := p.store.UpdateGroup(context.Background(), "berlin", func(g *fleet.Group) error {
		g.Selector = fleet.Selector{Match: fleet.Labels{"site": "berlin"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var doc *goquery.Document
	poll.Eventually(t, 10*time.Second, "the form lists the catalog", func() error {
		doc = p.page(t, "/rollouts/new", 200)
		if got := texts(doc.Find(`select[name="version"] option`)); strings.Join(got, ",") != "1.3.1,1.3.0,none" {
			return fmt.Errorf("versions %q", got)
		}
		if got := texts(doc.Find(`select[name="group"] option`)); strings.Join(got, ",") != "berlin" {
			return fmt.Errorf("groups %q", got)
		}
		return nil
	})
	if got := texts(doc.Find(`select[name="version"] option[selected]`)); len(got) != 1 || got[0] != "1.3.0" {
		t.Errorf("preselected %q, want the target 1.3.0", got)
	}
	for name, want := range map[string]string{"success": "90", "error": "20"} {
		if v, _ := doc.Find(`input[name="` + name + `"]`).Attr("value"); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}

	bad := []struct {
		form url.Values
		want string
	}{
		{url.Values{"version": {""}}, "choose a release"},
		{url.Values{"version": {"1.3.0"}, "waves": {"10,50"}}, "a rollout ends at 100%"},
		{url.Values{"version": {"1.3.0"}, "waves": {"canary:ten,100"}}, "want a percent"},
		{url.Values{"version": {"1.3.0"}, "error": {"150"}}, "pause at % failed: want a percent"},
		{url.Values{"version": {"1.3.0"}, "scope": {"selector"}, "selector": {"site=ber lin"}}, "selector"},
		{url.Values{"version": {"1.3.0"}, "scope": {"selector"}}, "type the labels"},
		{url.Values{"version": {"1.3.0"}, "scope": {"group"}, "group": {"nope"}}, `there is no group "nope"`},
		{url.Values{"other_version": {"1.4 beta!"}}, "rollout version"},
		{url.Values{"version": {"1.3.0"}, "soak": {"ten minutes"}}, "hold each wave"},
		{url.Values{"version": {"1.3.0"}, "soak": {"-1m"}}, "hold each wave"},
	}
	for _, tt := range bad {
		resp, body := p.post(t, p.client, "/rollouts", tt.form, nil)
		doc, _ := goquery.NewDocumentFromReader(strings.NewReader(body))
		msg := doc.Find("form.rollout-form .error").Text()
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(msg, "Nothing started: ") || !strings.Contains(msg, tt.want) {
			t.Errorf("%v: %s %q, want 400 saying %q", tt.form, resp.Status, msg, tt.want)
		}
	}
	// What was typed stays in the form.
	resp, body := p.post(t, p.client, "/rollouts", url.Values{"version": {"1.3.0"}, "waves": {"10,50"}, "max_concurrent": {"4"}}, nil)
	doc, _ = goquery.NewDocumentFromReader(strings.NewReader(body))
	if v, _ := doc.Find(`input[name="waves"]`).Attr("value"); resp.StatusCode != 400 || v != "10,50" || doc.Find(`input[name="max_concurrent"]`).AttrOr("value", "") != "4" {
		t.Errorf("the form came back with waves %q, max %q", v, doc.Find(`input[name="max_concurrent"]`).AttrOr("value", ""))
	}

	// A canary by label, thresholds and a version not in the catalog yet.
	resp, body = p.post(t, p.client, "/rollouts", url.Values{
		"version": {"1.3.0"}, "other_version": {"1.4.0"}, "scope": {"selector"}, "selector": {"site=berlin"},
		"waves": {"canary:[ring=canary],50,100"}, "success": {"80"}, "error": {"30"}, "max_concurrent": {"5"}, "soak": {"15m"},
	}, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != 303 || loc != "/rollouts/v1-4-0?notice=rollout-created" {
		t.Fatalf("create: %s to %q; body %.500s", resp.Status, loc, body)
	}
	ro := p.storedRollout(t, "v1-4-0")
	if ro.Version != "1.4.0" || ro.Selector.String() != "site=berlin" || ro.MaxConcurrent != 5 || ro.State != fleet.RolloutRunning {
		t.Errorf("created %+v", ro)
	}
	if got := wavesText(ro.Waves); got != "canary:[ring=canary],wave 2:50%,wave 3:100%" {
		t.Errorf("waves %s", got)
	}
	for _, w := range ro.Waves {
		if w.SuccessPercent != 80 || w.ErrorPercent != 30 || time.Duration(w.Soak) != 15*time.Minute {
			t.Errorf("wave %s thresholds %d/%d, hold %s, want 80/30 and 15m", w.Name, w.SuccessPercent, w.ErrorPercent, time.Duration(w.Soak))
		}
	}
	doc = p.page(t, "/rollouts/v1-4-0?notice=rollout-created", 200)
	if got := strings.Join(strings.Fields(doc.Find("#summary .alert.warn").Text()), " "); !strings.Contains(got, "1.4.0 is not in the catalog yet") {
		t.Errorf("a release not in the catalog: the page says %q", got)
	}

	// The default waves with the form's thresholds, for a group.
	resp, _ = p.post(t, p.client, "/rollouts", url.Values{"id": {"berlin-131"}, "version": {"1.3.1"}, "scope": {"group"}, "group": {"berlin"}, "success": {"95"}, "error": {"10"}}, nil)
	if resp.StatusCode != 303 {
		t.Fatalf("create for a group: %s", resp.Status)
	}
	ro = p.storedRollout(t, "berlin-131")
	if ro.Group != "berlin" || wavesText(ro.Waves) != "canary:10%,half:50%,all:100%" || ro.Waves[0].SuccessPercent != 95 || ro.Waves[2].ErrorPercent != 10 {
		t.Errorf("created %+v", ro)
	}
	resp, body = p.post(t, p.client, "/rollouts", url.Values{"id": {"berlin-131"}, "version": {"1.3.1"}}, nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already exists") {
		t.Errorf("a taken id: %s", resp.Status)
	}
}

// TestRolloutLive: the rollout's page stream hears the rollout service's
// writes, and the page shows them.
func TestRolloutLive(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.rollout(t, fleet.RolloutSpec{ID: "r1", Version: "1.3.0"}, time.Now(), nil)
	poll.Eventually(t, 10*time.Second, "the rollout on its page", func() error {
		resp, err := p.client.Get(p.srv.URL + "/rollouts/r1")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	})
	doc := p.page(t, "/rollouts/r1", 200)
	live, _ := doc.Find("body").Attr("data-live")
	u, _ := url.Parse(live)
	s := openStream(t, p, u.RawQuery)
	devices := openStream(t, p, "topics=devices")
	if _, err := p.store.UpdateRollout(context.Background(), "r1", func(r *fleet.Rollout) error {
		r.Waves[0].Counts = fleet.WaveCounts{Devices: 2, Succeeded: 1, InProgress: 1}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.expect(t, "event: change", 5*time.Second)
	devices.quiet(t, 500*time.Millisecond, "a devices-only stream heard of a rollout")
	doc = p.page(t, "/rollouts/r1", 200)
	if got := texts(doc.Find("#wave-0 .counts")); len(got) != 1 || got[0] != "1 succeeded 0 failed 1 in progress 0 waiting" {
		t.Errorf("canary counts %q after the change", got)
	}
}

// TestOverviewRollouts: the overview counts the rollouts that still
// move, and says which one paused and why.
func TestOverviewRollouts(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	if doc := p.page(t, "/", 200); doc.Find("#stats .stat.rollouts").Length() != 0 || strings.TrimSpace(doc.Find("#paused").Text()) != "" {
		t.Errorf("an overview without rollouts shows %q", doc.Find("#stats .stat.rollouts, #paused").Text())
	}
	canaryFleet(t, p)
	p.rollout(t, fleet.RolloutSpec{ID: "running", Version: "1.3.1"}, time.Now(), nil)
	p.rollout(t, fleet.RolloutSpec{ID: "done", Version: "1.2.0"}, time.Now(), func(r *fleet.Rollout) { r.State = fleet.RolloutCompleted })
	poll.Eventually(t, 10*time.Second, "the rollouts on the overview", func() error {
		doc := p.page(t, "/", 200)
		stat := doc.Find("#stats a.stat.rollouts")
		if got := strings.Join(strings.Fields(stat.Text()), " "); got != "2 rollouts, 1 paused" || !stat.HasClass("warn") || stat.AttrOr("href", "") != "/rollouts" {
			return fmt.Errorf("stat %q (class %q)", got, stat.AttrOr("class", ""))
		}
		alert := strings.Join(strings.Fields(doc.Find("#paused .alert").Text()), " ")
		if alert != "Rollout canary-130 is paused. wave canary: 1 of 4 devices failed (25%), at or above its error threshold of 20%" ||
			doc.Find("#paused a").AttrOr("href", "") != "/rollouts/canary-130" {
			return fmt.Errorf("alert %q", alert)
		}
		return nil
	})
}
