package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/web/pages"
)

// appendAudit writes n entries into st's audit log, oldest first: entry
// i (from 1) is "rollout.pause" on r<i%3> when i is a multiple of 10,
// else "device.tag" on kiosk-<i>, with detail "entry <i>".
func appendAudit(t testing.TB, st *store.Store, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		e := fleet.AuditEntry{Who: "admin (api) from 127.0.0.1", Action: "device.tag", Target: fmt.Sprint("kiosk-", i), Detail: fmt.Sprint("entry ", i)}
		if i%10 == 0 {
			e.Action, e.Target = "rollout.pause", fmt.Sprint("r", i%3)
		}
		if err := st.AppendAudit(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// auditLog asks GET /api/v1/audit with query and decodes the answer.
func (a *apiTest) auditLog(t *testing.T, query string) AuditLog {
	t.Helper()
	resp, body := a.do(t, "/api/v1/audit"+query, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/audit%s: %s %s", query, resp.Status, body)
	}
	var log AuditLog
	if err := json.Unmarshal([]byte(body), &log); err != nil {
		t.Fatalf("GET /api/v1/audit%s: %v\n%s", query, err, body)
	}
	return log
}

// details are the entries' details with "entry " cut, in order.
func details(es []fleet.AuditEntry) string {
	var out []string
	for _, e := range es {
		out = append(out, strings.TrimPrefix(e.Detail, "entry "))
	}
	return strings.Join(out, " ")
}

// TestAuditAPI walks the audit log through GET /api/v1/audit, newest
// first, a page at a time by its "next", filtered by action and target,
// and refuses bad query values with a JSON 400 that names the parameter.
func TestAuditAPI(t *testing.T) {
	a := newAPITest(t)
	if log := a.auditLog(t, ""); len(log.Entries) != 0 || log.Next != 0 {
		t.Errorf("empty log: %+v, want no entries and next 0", log)
	}
	if _, body := a.do(t, "/api/v1/audit", nil); !strings.Contains(body, `"entries": []`) {
		t.Errorf("empty log answers %s, want an empty list, not null", body)
	}
	appendAudit(t, a.store, 120)

	first := a.auditLog(t, "")
	if len(first.Entries) != 50 || first.Entries[0].Detail != "entry 120" || first.Entries[49].Detail != "entry 71" {
		t.Fatalf("first page: %d entries %s, want 120 down to 71", len(first.Entries), details(first.Entries))
	}
	e := first.Entries[0]
	if e.Seq == 0 || e.Who != "admin (api) from 127.0.0.1" || e.Action != "rollout.pause" || e.Target != "r0" || time.Since(e.Time) > time.Minute {
		t.Errorf("newest entry = %+v", e)
	}
	if first.Next != first.Entries[49].Seq {
		t.Errorf("next = %d, want the last entry's seq %d", first.Next, first.Entries[49].Seq)
	}
	second := a.auditLog(t, fmt.Sprint("?before=", first.Next))
	if len(second.Entries) != 50 || second.Entries[0].Detail != "entry 70" {
		t.Errorf("second page: %s, want 70 down to 21", details(second.Entries))
	}
	last := a.auditLog(t, fmt.Sprint("?before=", second.Next))
	if len(last.Entries) != 20 || last.Entries[19].Detail != "entry 1" || last.Next != 0 {
		t.Errorf("last page: %s next %d, want 20 down to 1 and next 0", details(last.Entries), last.Next)
	}
	if got := a.auditLog(t, "?limit=3"); details(got.Entries) != "120 119 118" || got.Next != got.Entries[2].Seq {
		t.Errorf("limit=3: %s next %d", details(got.Entries), got.Next)
	}
	if got := a.auditLog(t, "?limit=120"); len(got.Entries) != 120 || got.Next != 0 {
		t.Errorf("limit=120 of 120: %d entries, next %d, want all and 0", len(got.Entries), got.Next)
	}

	filters := []struct {
		query, want string
		next        bool
	}{
		{"?action=rollout.", "120 110 100 90 80 70 60 50 40 30 20 10", false},
		{"?action=rollout&target=r1", "100 70 40 10", false},
		{"?target=kiosk-7", "7", false},
		{"?action=rollout.&limit=2", "120 110", true},
		{"?action=session.", "", false},
	}
	for _, tt := range filters {
		got := a.auditLog(t, tt.query)
		if details(got.Entries) != tt.want || (got.Next != 0) != tt.next {
			t.Errorf("%s: %q next %d, want %q (a next: %v)", tt.query, details(got.Entries), got.Next, tt.want, tt.next)
		}
	}
	// A filtered page goes on where the one before stopped.
	p1 := a.auditLog(t, "?action=rollout.&limit=5")
	p2 := a.auditLog(t, fmt.Sprint("?action=rollout.&limit=5&before=", p1.Next))
	if details(p1.Entries)+" | "+details(p2.Entries) != "120 110 100 90 80 | 70 60 50 40 30" {
		t.Errorf("filtered pages: %s | %s", details(p1.Entries), details(p2.Entries))
	}

	bad := []struct{ query, param string }{
		{"?limit=0", "limit"}, {"?limit=1001", "limit"}, {"?limit=ten", "limit"}, {"?limit=", "limit"},
		{"?before=-1", "before"}, {"?before=x", "before"}, {"?before=1.5", "before"},
		{"?target=" + strings.Repeat("x", 129), "target"},
	}
	for _, tt := range bad {
		resp, body := a.do(t, "/api/v1/audit"+tt.query, nil)
		var e struct{ Error, Param string }
		if resp.StatusCode != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || e.Param != tt.param || e.Error == "" {
			t.Errorf("GET /api/v1/audit%s: %s %s, want 400 naming %s in JSON", tt.query, resp.Status, body, tt.param)
		}
	}
	req, _ := http.NewRequest("GET", a.srv.URL+"/api/v1/audit", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/audit without the token: %s, want 401", resp.Status)
	}
}

// TestAuditFilterScanIsBounded: a filter that matches nothing in a long
// log reads a bounded part of it and answers where to go on from.
func TestAuditFilterScanIsBounded(t *testing.T) {
	a := newAPITest(t)
	appendAudit(t, a.store, auditScan+600)
	got := a.auditLog(t, "?action=group.")
	if len(got.Entries) != 0 || got.Next == 0 {
		t.Fatalf("no match in %d entries: %d entries, next %d; want none and where to go on", auditScan+600, len(got.Entries), got.Next)
	}
	rest := a.auditLog(t, fmt.Sprint("?action=group.&before=", got.Next))
	if len(rest.Entries) != 0 || rest.Next != 0 {
		t.Errorf("the rest: %d entries, next %d; want none and the end", len(rest.Entries), rest.Next)
	}
}

// TestAuditPage shows the audit log on the dashboard: newest first,
// fifty to a page with links to older and newest, the filters kept in
// them, the who and target of each action, and device targets linking
// to the device.
func TestAuditPage(t *testing.T) {
	var empty strings.Builder
	if err := pages.Audit(pages.AuditView{}).Render(context.Background(), &empty); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(empty.String(), `<p class="muted">No actions recorded.</p>`) {
		t.Errorf("an empty log's page:\n%s\nsays nothing of it", empty.String())
	}
	p := newPageTest(t, pageOptions{}) // its sign-in may be the first entry
	doc := p.page(t, "/audit?action=device.", 200)
	if got := strings.TrimSpace(doc.Find("#audit p.muted").Text()); got != "No action matches." {
		t.Errorf("no device action yet, the page says %q", got)
	}
	if cur := doc.Find(`header nav a[aria-current="page"]`); cur.Text() != "Audit log" {
		t.Errorf("current nav item = %q, want Audit log", cur.Text())
	}
	if doc := p.page(t, "/", 200); doc.Find(`header nav a[href="/audit"]`).Length() != 1 {
		t.Error("the Overview's navigation has no link to the audit log")
	}

	appendAudit(t, p.store, 120)
	// One action recorded as a handler records it, from a dashboard session.
	r := httptest.NewRequest("POST", "/clients/kiosk-9/offer", nil)
	r.RemoteAddr = "192.0.2.7:51234"
	p.web.audit(r, "device.offer-again", "kiosk-9", "<b>by hand</b>")
	if err := p.store.AppendAudit(context.Background(), fleet.AuditEntry{Who: `"><img src=x onerror=alert(1)>`, Action: "rollout.create", Target: "<script>alert(1)</script>"}); err != nil {
		t.Fatal(err)
	}
	doc = p.page(t, "/audit?action=rollout.create", 200)
	if n := doc.Find("img, [onerror], main script").Length(); n != 0 {
		t.Errorf("%d elements injected through the audit log", n)
	}
	if got := rows(doc.Find("#audit tbody tr")); len(got) != 1 || !strings.Contains(got[0], `|"><img src=x onerror=alert(1)>|rollout.create|<script>alert(1)</script>|`) {
		t.Errorf("hostile entry shown as %q, want its characters", got)
	}

	doc = p.page(t, "/audit", 200)
	got := rows(doc.Find("#audit tbody tr"))
	if len(got) != 50 {
		t.Fatalf("first page: %d rows, want 50", len(got))
	}
	if want := "admin (dashboard) from 192.0.2.7|device.offer-again|kiosk-9|<b>by hand</b>"; !strings.HasSuffix(got[1], want) {
		t.Errorf("newest row = %q, want it to end %q", got[0], want)
	}
	if href, _ := doc.Find("#audit tbody tr").Eq(1).Find("td.id a").Attr("href"); href != "/clients/kiosk-9" {
		t.Errorf("a device target links to %q, want its page", href)
	}
	if href, _ := doc.Find("#audit tbody tr").Eq(2).Find("td.id a").Attr("href"); href != "/rollouts/r0" {
		t.Errorf("a rollout target links to %q, want its page", href)
	}
	older, ok := doc.Find(`#audit a[rel="next"]`).Attr("href")
	if !ok || !strings.HasPrefix(older, "/audit?before=") {
		t.Fatalf("no older link: %q", older)
	}
	doc = p.page(t, older, 200)
	if got := rows(doc.Find("#audit tbody tr")); len(got) != 50 || !strings.HasSuffix(got[0], "|entry 72") {
		t.Errorf("second page: %d rows from %q, want 50 from entry 72", len(got), got[0])
	}
	if newest, _ := doc.Find("#audit nav.pager a").First().Attr("href"); newest != "/audit" {
		t.Errorf("second page's first link = %q, want /audit", newest)
	}

	doc = p.page(t, "/audit?action=rollout.&target=r1", 200)
	got = rows(doc.Find("#audit tbody tr"))
	if len(got) != 4 || !strings.HasSuffix(got[0], "rollout.pause|r1|entry 100") {
		t.Errorf("filtered: %q, want the 4 pauses of r1", got)
	}
	if v, _ := doc.Find(`input[name="action"]`).Attr("value"); v != "rollout." {
		t.Errorf("action field = %q", v)
	}
	doc = p.page(t, "/audit?action=rollout.&limit=5", 200)
	older, _ = doc.Find(`#audit a[rel="next"]`).Attr("href")
	if older == "" || !strings.Contains(older, "action=rollout.") || !strings.Contains(older, "limit=5") {
		t.Errorf("a filtered page's older link %q loses its filter or size", older)
	}
	doc = p.page(t, "/audit?target=nobody", 200)
	if got := strings.TrimSpace(doc.Find("#audit p.muted").Text()); got != "No action matches." {
		t.Errorf("no match says %q", got)
	}
	doc = p.page(t, "/audit?before=x", 400)
	if doc.Find("p.error").Length() != 1 || doc.Find("#audit tbody tr").Length() != 0 {
		t.Error("a bad before shows no error, or entries")
	}
}

// TestAuditTargetLinks: a target links to its page while it has one, and
// otherwise to every action on it.
func TestAuditTargetLinks(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	for _, e := range []fleet.AuditEntry{
		{Action: "device.tag", Target: "kiosk 1"},
		{Action: "device.delete", Target: "kiosk-2"},
		{Action: "rollout.create", Target: "r1"},
		{Action: "rollout.delete", Target: "r2"},
		{Action: "group.set", Target: "kiosks"},
	} {
		e.Who = "admin (api) from 127.0.0.1"
		if err := p.store.AppendAudit(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	doc := p.page(t, "/audit?action=", 200)
	var got []string
	doc.Find("#audit tbody tr td.id a").Each(func(_ int, a *goquery.Selection) {
		href, _ := a.Attr("href")
		got = append(got, a.Text()+" "+href)
	})
	want := "kiosks /audit?target=kiosks|r2 /audit?target=r2|r1 /rollouts/r1|kiosk-2 /audit?target=kiosk-2|kiosk 1 /clients/kiosk%201"
	if strings.Join(got, "|") != want {
		t.Errorf("target links:\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
}
