package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
)

// enroll records an enrollment as the enroll service does.
func (p *pageTest) enroll(t testing.TB, id, hostname string, state fleet.EnrollState, requested time.Time) {
	t.Helper()
	en := fleet.Enrollment{ID: id, PublicKey: userKey(id), Hostname: hostname, State: state, Requested: requested.UTC()}
	if state != fleet.EnrollPending {
		en.Decided = requested.Add(time.Minute).UTC()
	}
	if err := p.store.PutEnrollment(context.Background(), en, 0); err != nil {
		t.Fatal(err)
	}
}

func (p *pageTest) enrollState(t testing.TB, id string) fleet.EnrollState {
	t.Helper()
	en, _, err := p.store.Enrollment(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return en.State
}

// userKey is a plausible user public key (56 characters, starting with U)
// that differs by id.
func userKey(id string) string {
	k := "U" + strings.ToUpper(strings.ReplaceAll(id, "-", "")) + strings.Repeat("A", 55)
	return k[:50] + "QZ7XQM"
}

// post sends a form as the signed-in browser, from the dashboard's own
// origin, and returns the response with its body read.
func (p *pageTest) post(t testing.TB, c *http.Client, path string, form url.Values, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", p.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestPendingPanel(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	hostile := `<script>alert(1)</script>`
	now := time.Now()
	p.enroll(t, "kiosk-new", "till-3.shop", fleet.EnrollPending, now.Add(-2*time.Minute-5*time.Second))
	p.enroll(t, "kiosk-evil", hostile, fleet.EnrollPending, now.Add(-5*time.Minute))
	p.enroll(t, "kiosk-ok", "ok.local", fleet.EnrollApproved, now.Add(-time.Hour))
	p.enroll(t, "kiosk-gone", "gone.local", fleet.EnrollRevoked, now.Add(-time.Hour))
	p.device(t, "kiosk-ok", kiosk("kiosk-ok", "1.0", true))
	p.device(t, "kiosk-gone", kiosk("kiosk-gone", "1.0", false))

	doc := p.page(t, "/clients", 200)
	panel := doc.Find("#pending section.pending")
	if got := strings.Join(strings.Fields(panel.Find("h2").Text()), " "); got != "Waiting for approval 2" {
		t.Errorf("panel title = %q", got)
	}
	// Longest waiting first; the hostname the agent gave is text.
	if got, want := rows(panel.Find("tbody tr")), []string{
		"|kiosk-evil|" + hostile + "|5 min ago|UKIOSKEV…QZ7XQM|Approve",
		"|kiosk-new|till-3.shop|2 min ago|UKIOSKNE…QZ7XQM|Approve",
	}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("pending rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := panel.Find("script").Length(); n != 0 {
		t.Errorf("%d script elements in the panel", n)
	}
	if title, _ := panel.Find("#pending-kiosk-new td.key").Attr("title"); title != userKey("kiosk-new") {
		t.Errorf("the whole key on hover = %q, want %q", title, userKey("kiosk-new"))
	}
	form := panel.Find("#pending-kiosk-new form")
	if action, _ := form.Attr("action"); action != "/clients/kiosk-new/approve" {
		t.Errorf("approve form action = %q", action)
	}
	if m, _ := form.Attr("method"); m != "post" {
		t.Errorf("approve form method = %q, want post", m)
	}
	if got := texts(doc.Find("#device-kiosk-gone td.status .badge")); strings.Join(got, " ") != "notAlive revoked" {
		t.Errorf("revoked device's status = %q, want notAlive revoked", got)
	}
	if got := texts(doc.Find("#device-kiosk-ok td.status .badge")); strings.Join(got, " ") != "alive" {
		t.Errorf("approved device's status = %q, want alive", got)
	}
	if live, _ := doc.Find("body").Attr("data-live"); !strings.Contains(live, "enrollments") {
		t.Errorf("the Clients page does not hear enrollment changes: %q", live)
	}

	over := p.page(t, "/", 200)
	stat := over.Find("#stats a.stat.pending")
	if href, _ := stat.Attr("href"); stat.Find(".value").Text() != "2" || href != "/clients#pending" {
		t.Errorf("overview pending stat = %q linking %q, want 2 linking /clients#pending", stat.Find(".value").Text(), href)
	}

	// Nobody waiting: an empty region (for a live refresh to fill), no stat.
	for _, id := range []string{"kiosk-new", "kiosk-evil"} {
		if _, err := p.store.SetEnrollState(context.Background(), id, fleet.EnrollApproved); err != nil {
			t.Fatal(err)
		}
	}
	poll.Eventually(t, 10*time.Second, "the panel empties", func() error {
		doc := p.page(t, "/clients", 200)
		html, _ := doc.Find("#pending").Html()
		if doc.Find("#pending").Length() != 1 || strings.TrimSpace(html) != "" {
			return fmt.Errorf("panel %q", html)
		}
		return nil
	})
	if n := p.page(t, "/", 200).Find("#stats a.stat.pending").Length(); n != 0 {
		t.Errorf("the overview shows a pending stat with nobody waiting")
	}
}

func TestApprove(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.enroll(t, "kiosk-1", "one.local", fleet.EnrollPending, time.Now().Add(-time.Minute))
	p.enroll(t, "kiosk-2", "two.local", fleet.EnrollPending, time.Now().Add(-time.Minute))
	p.enroll(t, "kiosk-3", "three.local", fleet.EnrollRevoked, time.Now().Add(-time.Hour))
	p.device(t, "kiosk-3", kiosk("kiosk-3", "1.0", false))

	tests := []struct {
		id, back string
		status   int
		location string
		state    fleet.EnrollState
	}{
		// From the Clients page, back to it with its query.
		{"kiosk-1", "/clients?q=kiosk&sort=-id", 303, "/clients?notice=approved&q=kiosk&sort=-id", fleet.EnrollApproved},
		// From the device's page, or anywhere else: back to the device.
		{"kiosk-2", "https://evil.example/clients", 303, "/clients/kiosk-2?notice=approved", fleet.EnrollApproved},
		// Approving twice is no harm.
		{"kiosk-2", "/clients/kiosk-2", 303, "/clients/kiosk-2?notice=approved", fleet.EnrollApproved},
		// Revocation is final.
		{"kiosk-3", "", 409, "", fleet.EnrollRevoked},
		{"nobody", "", 404, "", ""},
	}
	for _, tt := range tests {
		resp, body := p.post(t, p.client, "/clients/"+tt.id+"/approve", url.Values{"back": {tt.back}}, nil)
		if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location {
			t.Errorf("approve %s from %q: %s to %q, want %d to %q", tt.id, tt.back, resp.Status, resp.Header.Get("Location"), tt.status, tt.location)
		}
		if tt.state != "" {
			if got := p.enrollState(t, tt.id); got != tt.state {
				t.Errorf("after approving %s: %s, want %s", tt.id, got, tt.state)
			}
		}
		if tt.status == 409 && !strings.Contains(body, "revocation is final") {
			t.Errorf("approving a revoked device says nothing of why: %s", body)
		}
	}
	doc := p.page(t, "/clients?notice=approved&q=kiosk&sort=-id", 200)
	if got := doc.Find("p.notice").Text(); !strings.HasPrefix(got, "Approved:") {
		t.Errorf("notice after approving = %q", got)
	}
	if n := doc.Find("#pending tr").Length(); n != 0 {
		t.Errorf("%d devices still listed as waiting", n)
	}
}

func TestRevoke(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.enroll(t, "kiosk-1", "one.local", fleet.EnrollApproved, time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	p.device(t, "kiosk-1", kiosk("kiosk-1", "1.0", true))

	doc := p.page(t, "/clients/kiosk-1", 200)
	facts := map[string]string{}
	doc.Find("#enrollment dl.facts dt").Each(func(_ int, dt *goquery.Selection) {
		facts[dt.Text()] = strings.Join(strings.Fields(dt.Next().Text()), " ")
	})
	for k, v := range map[string]string{"State": "approved", "Approved": "2026-03-01 09:01:00 UTC", "Public key": userKey("kiosk-1")} {
		if facts[k] != v {
			t.Errorf("identity fact %q = %q, want %q", k, facts[k], v)
		}
	}
	form := doc.Find("#enrollment form.revoke")
	if action, _ := form.Attr("action"); action != "/clients/kiosk-1/revoke" {
		t.Errorf("revoke form action = %q", action)
	}
	box := form.Find(`input[type="checkbox"][name="confirm"]`)
	if _, required := box.Attr("required"); !required || !strings.Contains(form.Text(), "disconnected and refused") {
		t.Errorf("the revoke form does not ask for a ticked confirmation: %s", form.Text())
	}
	if doc.Find("#summary .badge.bad:contains('revoked')").Length() != 0 {
		t.Error("an approved device shows as revoked")
	}

	// Without the box ticked: 400, the page says why, nothing changes.
	for _, confirm := range []string{"", "no"} {
		resp, body := p.post(t, p.client, "/clients/kiosk-1/revoke", url.Values{"confirm": {confirm}}, nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("revoke with confirm=%q: %s, want 400", confirm, resp.Status)
		}
		doc, _ := goquery.NewDocumentFromReader(strings.NewReader(body))
		if got := doc.Find("#enrollment p.error").Text(); !strings.Contains(got, "tick the box") {
			t.Errorf("revoke with confirm=%q: the page says %q", confirm, got)
		}
		if got := p.enrollState(t, "kiosk-1"); got != fleet.EnrollApproved {
			t.Fatalf("revoke without confirmation changed the enrollment to %s", got)
		}
	}

	resp, _ := p.post(t, p.client, "/clients/kiosk-1/revoke", url.Values{"confirm": {"yes"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/clients/kiosk-1?notice=revoked" {
		t.Fatalf("revoke: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	if got := p.enrollState(t, "kiosk-1"); got != fleet.EnrollRevoked {
		t.Fatalf("after revoking: %s, want revoked", got)
	}
	doc = p.page(t, "/clients/kiosk-1?notice=revoked", 200)
	if got := doc.Find("p.notice").Text(); !strings.HasPrefix(got, "Revoked:") {
		t.Errorf("notice after revoking = %q", got)
	}
	if got := texts(doc.Find("#summary .badge.bad")); !strings.Contains(strings.Join(got, " "), "revoked") {
		t.Errorf("summary badges = %q, want revoked", got)
	}
	if got := texts(doc.Find("#enrollment dl.facts .badge")); strings.Join(got, " ") != "revoked" {
		t.Errorf("identity state = %q, want revoked", got)
	}
	if n := doc.Find("#enrollment form.revoke, #enrollment form.approve").Length(); n != 0 {
		t.Errorf("%d approve or revoke forms on a revoked device's identity, want none", n)
	}
}

func TestPendingDeviceHasAPage(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	hostile := `"><img src=x onerror=alert(1)>`
	p.enroll(t, "kiosk-9", hostile, fleet.EnrollPending, time.Now().Add(-time.Minute))
	p.event(t, fleet.Event{Device: "kiosk-9", Event: fleet.EventPending, Detail: "waiting for an operator's approval"})

	doc := p.page(t, "/clients/kiosk-9", 200)
	if got := texts(doc.Find("#summary .badge")); strings.Join(got, " ") != "waiting for approval" {
		t.Errorf("summary = %q", got)
	}
	if got := doc.Find("#enrollment dd.hostname").Text(); got != hostile {
		t.Errorf("hostname it gave = %q, want the characters %q", got, hostile)
	}
	if n := doc.Find("img, [onerror]").Length(); n != 0 {
		t.Errorf("%d injected elements", n)
	}
	if n := doc.Find("#install, #hardware, #storage").Length(); n != 0 {
		t.Errorf("%d sections about a device that has not reported", n)
	}
	if action, _ := doc.Find("#enrollment form.approve").Attr("action"); action != "/clients/kiosk-9/approve" {
		t.Errorf("approve form action = %q", action)
	}
	if got := texts(doc.Find("#timeline .badge")); strings.Join(got, " ") != "pending_approval" {
		t.Errorf("timeline = %q", got)
	}
	if live, _ := doc.Find("body").Attr("data-live"); !strings.Contains(live, "enrollments") || !strings.Contains(live, "device=kiosk-9") {
		t.Errorf("the device page's stream %q does not hear its enrollment", live)
	}
	resp, _ := p.post(t, p.client, "/clients/kiosk-9/approve", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/clients/kiosk-9?notice=approved" {
		t.Errorf("approve from the device's page: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	if got := p.enrollState(t, "kiosk-9"); got != fleet.EnrollApproved {
		t.Errorf("after approving: %s", got)
	}
	p.page(t, "/clients/never-enrolled", 404)
}

// TestApprovalGuarded checks that only the signed-in dashboard itself can
// approve or revoke: a cross-site form is refused, and a browser without
// a session is sent to sign in; either way nothing changes.
func TestApprovalGuarded(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.enroll(t, "waiting", "w.local", fleet.EnrollPending, time.Now())
	p.enroll(t, "kiosk-1", "one.local", fleet.EnrollApproved, time.Now())
	p.device(t, "kiosk-1", kiosk("kiosk-1", "1.0", true))
	yes := url.Values{"confirm": {"yes"}}
	for _, path := range []string{"/clients/waiting/approve", "/clients/kiosk-1/revoke"} {
		for _, header := range []map[string]string{
			{"Sec-Fetch-Site": "cross-site"},
			{"Origin": "http://evil.example"},
		} {
			if resp, _ := p.post(t, p.client, path, yes, header); resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s with %v: %s, want 403", path, header, resp.Status)
			}
		}
		resp, _ := p.post(t, newClient(), path, yes, nil)
		next := strings.TrimSuffix(strings.TrimSuffix(path, "/approve"), "/revoke")
		want := "/login?" + url.Values{"next": {next}}.Encode()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("POST %s without a session: %s to %q, want 303 to %q", path, resp.Status, resp.Header.Get("Location"), want)
		}
	}
	if got := p.enrollState(t, "waiting"); got != fleet.EnrollPending {
		t.Errorf("a refused approval changed the enrollment to %s", got)
	}
	if got := p.enrollState(t, "kiosk-1"); got != fleet.EnrollApproved {
		t.Errorf("a refused revocation changed the enrollment to %s", got)
	}
}

func TestLiveEnrollments(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.web.hub.seenEvery = time.Hour
	p.enroll(t, "k1", "", fleet.EnrollPending, time.Now())
	p.enroll(t, "k2", "", fleet.EnrollPending, time.Now())
	p.page(t, "/clients", 200) // the hub has loaded
	since := p.web.hub.Begin(context.Background())
	all := openStream(t, p, "topics=devices,enrollments&since="+strconv.FormatUint(since, 10))
	one := openStream(t, p, "topics=devices,enrollments&device=k1&since="+strconv.FormatUint(since, 10))
	devicesOnly := openStream(t, p, "topics=devices&since="+strconv.FormatUint(since, 10))

	if _, err := p.store.SetEnrollState(context.Background(), "k2", fleet.EnrollApproved); err != nil {
		t.Fatal(err)
	}
	all.expect(t, "event: change", 10*time.Second)
	one.quiet(t, time.Second, "k1's page heard k2's approval")
	if _, err := p.store.SetEnrollState(context.Background(), "k1", fleet.EnrollRevoked); err != nil {
		t.Fatal(err)
	}
	one.expect(t, "event: change", 10*time.Second)
	devicesOnly.quiet(t, 500*time.Millisecond, "a devices stream heard an enrollment")
}

func TestBackURL(t *testing.T) {
	tests := []struct{ back, id, want string }{
		{"/clients", "k", "/clients?notice=approved"},
		{"/clients?page=2&notice=offered", "k", "/clients?notice=approved&page=2"},
		{"/clients/k", "k", "/clients/k?notice=approved"},
		{"/clients/other", "k", "/clients/k?notice=approved"},
		{"/history", "k", "/clients/k?notice=approved"},
		{"//evil.example/clients", "k", "/clients/k?notice=approved"},
		{"", "k", "/clients/k?notice=approved"},
	}
	for _, tt := range tests {
		if got := backURL(tt.back, tt.id, "approved"); got != tt.want {
			t.Errorf("backURL(%q, %q) = %q, want %q", tt.back, tt.id, got, tt.want)
		}
	}
}

// TestDelete deletes a device from its page (with the box ticked) and
// through the API: its record goes, the clients page no longer lists it,
// the history says who deleted it, and an unknown id is a 404.
func TestDelete(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	for _, id := range []string{"kiosk-1", "kiosk-2"} {
		p.enroll(t, id, id+".local", fleet.EnrollApproved, time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
		p.device(t, id, kiosk(id, "1.0", false))
	}
	doc := p.page(t, "/clients/kiosk-1", 200)
	form := doc.Find("form.delete")
	if action, _ := form.Attr("action"); action != "/clients/kiosk-1/delete" {
		t.Fatalf("delete form action = %q", action)
	}
	if resp, _ := p.post(t, p.client, "/clients/kiosk-1/delete", url.Values{}, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("delete without confirmation: %s, want 400", resp.Status)
	}
	if _, err := p.store.Device(context.Background(), "kiosk-1"); err != nil {
		t.Fatalf("delete without confirmation removed the device: %v", err)
	}
	resp, _ := p.post(t, p.client, "/clients/kiosk-1/delete", url.Values{"confirm": {"yes"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/clients" {
		t.Fatalf("delete: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	if _, err := p.store.Device(context.Background(), "kiosk-1"); err == nil {
		t.Error("the device record is still there")
	}
	if got := p.enrollState(t, "kiosk-1"); got != fleet.EnrollDeleted {
		t.Errorf("enrollment after deleting: %s, want deleted (the enrollment service removes it)", got)
	}

	req, _ := http.NewRequest("DELETE", p.srv.URL+"/api/v1/devices/kiosk-2", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("DELETE /api/v1/devices/kiosk-2: %s", res.Status)
	}
	req, _ = http.NewRequest("DELETE", p.srv.URL+"/api/v1/devices/never-was", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if res, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("DELETE an unknown device: %s, want 404", res.Status)
	}
	for _, id := range []string{"kiosk-1", "kiosk-2"} {
		evs, err := p.store.Events(context.Background(), fleet.EventFilter{Device: id})
		if err != nil || len(evs) == 0 || evs[0].Event != fleet.EventDeleted || !strings.Contains(evs[0].Detail, "an operator") {
			t.Errorf("%s history: %+v %v, want a deleted event first", id, evs, err)
		}
	}
	poll.Eventually(t, 10*time.Second, "the deleted devices gone from the clients page", func() error {
		doc := p.page(t, "/clients", 200)
		if n := doc.Find(`a[href="/clients/kiosk-1"], a[href="/clients/kiosk-2"]`).Length(); n > 0 {
			return fmt.Errorf("%d still listed", n)
		}
		return nil
	})
}
