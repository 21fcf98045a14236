package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
)

// send makes an API request with the admin token and a JSON body (none
// when body is "") and returns the status and the body.
func (a *apiTest) send(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, a.srv.URL+path, r)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json; body %s", method, path, ct, b)
	}
	return resp.StatusCode, string(b)
}

// rolloutOf decodes an API rollout, failing the test unless status is want.
func rolloutOf(t *testing.T, status int, body string, want int) rolloutJSON {
	t.Helper()
	if status != want {
		t.Fatalf("status %d, want %d; body %s", status, want, body)
	}
	var r rolloutJSON
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return r
}

// auditActions are the audit log's entries, oldest first, as
// "action target".
func auditActions(t *testing.T, a *apiTest) []fleet.AuditEntry {
	t.Helper()
	es, _, err := a.store.AuditPage(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(es)
	return es
}

func TestRolloutsAPICreate(t *testing.T) {
	a := newAPITest(t)
	ctx := context.Background()
	if _, err := a.store.UpdateGroup(ctx, "kiosks", func(g *fleet.Group) error {
		g.Selector = fleet.Selector{Match: fleet.Labels{"kind": "kiosk"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	bad := []struct{ name, body, want string }{
		{"not JSON", `{"id":`, "rollout spec"},
		{"unknown field", `{"id":"r1","version":"1.2","wave":[]}`, `unknown field "wave"`},
		{"no version", `{"id":"r1"}`, "version"},
		{"bad version", `{"id":"r1","version":"not a version!"}`, "version"},
		{"bad id", `{"id":"R 1","version":"1.2"}`, "rollout id"},
		{"reserved id", `{"id":"new","version":"1.2"}`, "New rollout form"},
		{"waves not ending at 100", `{"id":"r1","version":"1.2","waves":[{"percent":10},{"percent":50}]}`, "ends at 100"},
		{"waves shrinking", `{"id":"r1","version":"1.2","waves":[{"percent":50},{"percent":10},{"percent":100}]}`, "more than the wave before"},
		{"threshold over 100", `{"id":"r1","version":"1.2","waves":[{"percent":100,"error_percent":120}]}`, "0 to 100"},
		{"bad selector string", `{"id":"r1","version":"1.2","selector":"site=ber lin"}`, "selector"},
		{"bad selector object", `{"id":"r1","version":"1.2","selector":{"matches":{"a":"b"}}}`, "selector"},
		{"unknown group", `{"id":"r1","version":"1.2","group":"nope"}`, `no group "nope"`},
		{"group and selector", `{"id":"r1","version":"1.2","group":"kiosks","selector":"a=b"}`, "not both"},
		{"negative concurrency", `{"id":"r1","version":"1.2","max_concurrent":-1}`, "max_concurrent"},
	}
	for _, tt := range bad {
		status, body := a.send(t, "POST", "/api/v1/rollouts", tt.body)
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(body), &e)
		if status != http.StatusBadRequest || !strings.Contains(e.Error, tt.want) {
			t.Errorf("%s: %d %s, want 400 with an error saying %q", tt.name, status, body, tt.want)
		}
	}
	if rs, err := a.store.Rollouts(ctx); err != nil || len(rs) != 0 {
		t.Fatalf("refused specs left rollouts: %v %v", rs, err)
	}

	// The default waves, and a selector written as a string.
	status, body := a.send(t, "POST", "/api/v1/rollouts", `{"id":"berlin","version":"1.2.0","selector":"site=berlin","max_concurrent":3}`)
	r := rolloutOf(t, status, body, http.StatusCreated)
	if r.ID != "berlin" || r.Version != "1.2.0" || r.State != fleet.RolloutRunning || r.MaxConcurrent != 3 ||
		r.Selector.Match["site"] != "berlin" || !strings.HasPrefix(r.By, "admin (api)") {
		t.Errorf("created %+v", r.Rollout)
	}
	if got := wavesText(r.Waves); got != "canary:10%,half:50%,all:100%" {
		t.Errorf("waves %s, want the default canary:10%%,half:50%%,all:100%%", got)
	}
	if strings.Contains(body, `"members"`) {
		t.Errorf("created rollout shows its members: %s", body)
	}
	if !strings.Contains(body, `"counts"`) {
		t.Errorf("created rollout has no counts: %s", body)
	}
	got, err := a.store.Rollout(ctx, "berlin")
	if err != nil || got.Version != "1.2.0" || len(got.Waves) != 3 {
		t.Fatalf("stored rollout %+v, %v", got, err)
	}

	status, body = a.send(t, "POST", "/api/v1/rollouts", `{"id":"berlin","version":"1.3.0"}`)
	if status != http.StatusConflict || !strings.Contains(body, "already exists") {
		t.Errorf("second rollout with the same id: %d %s, want 409", status, body)
	}
	if got, _ := a.store.Rollout(ctx, "berlin"); got.Version != "1.2.0" {
		t.Errorf("the refused rollout changed the first: version %s", got.Version)
	}

	// Named waves with a selector wave, a group, and no id: one is made of
	// the version, and the next such gets a number.
	spec := `{"version":"1.3.0-rc.1","group":"kiosks","waves":[
		{"name":"canary","selector":{"match":{"ring":"canary"}},"error_percent":20},
		{"percent":50,"success_percent":80},{"percent":100}]}`
	status, body = a.send(t, "POST", "/api/v1/rollouts", spec)
	r = rolloutOf(t, status, body, http.StatusCreated)
	if r.ID != "v1-3-0-rc-1" || r.Group != "kiosks" || len(r.Waves) != 3 || r.Waves[0].Selector == nil || r.Waves[1].Name != "wave 2" {
		t.Errorf("created %+v", r.Rollout)
	}
	status, body = a.send(t, "POST", "/api/v1/rollouts", spec)
	if r = rolloutOf(t, status, body, http.StatusCreated); r.ID != "v1-3-0-rc-1-2" {
		t.Errorf("second rollout of the same version: id %s, want v1-3-0-rc-1-2", r.ID)
	}

	var creates []string
	for _, e := range auditActions(t, a) {
		creates = append(creates, e.Action+" "+e.Target)
		if !strings.HasPrefix(e.Who, "admin (api) from ") {
			t.Errorf("audit entry by %q", e.Who)
		}
	}
	if want := []string{"rollout.create berlin", "rollout.create v1-3-0-rc-1", "rollout.create v1-3-0-rc-1-2"}; !slices.Equal(creates, want) {
		t.Errorf("audit log %q, want %q", creates, want)
	}
}

func TestRolloutsAPIListAndGet(t *testing.T) {
	a := newAPITest(t)
	ctx := context.Background()
	for i, id := range []string{"old", "mid", "new-one"} {
		ro, err := fleet.NewRollout(fleet.RolloutSpec{ID: id, Version: "1.0"}, "test", time.Now().Add(time.Duration(i-3)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.store.CreateRollout(ctx, ro); err != nil {
			t.Fatal(err)
		}
	}
	// The rollout service's counts and members, as it writes them.
	if _, err := a.store.UpdateRollout(ctx, "mid", func(r *fleet.Rollout) error {
		r.Members = map[string]fleet.Member{"k1": {Wave: 0, From: "0.9"}, "k2": {Wave: 1, From: "0.9"}}
		r.Waves[0].Counts = fleet.WaveCounts{Devices: 1, Succeeded: 1}
		r.Waves[1].Counts = fleet.WaveCounts{Devices: 5, Failed: 1, InProgress: 2, Waiting: 2}
		r.Updated = time.Now()
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	var list struct {
		Rollouts []rolloutJSON `json:"rollouts"`
	}
	var body string
	poll.Eventually(t, 10*time.Second, "the three rollouts listed, mid counted", func() error {
		var status int
		status, body = a.send(t, "GET", "/api/v1/rollouts", "")
		list.Rollouts = nil
		if err := json.Unmarshal([]byte(body), &list); status != 200 || err != nil {
			return fmt.Errorf("list: %d %s %v", status, body, err)
		}
		if len(list.Rollouts) != 3 || list.Rollouts[1].Counts.Devices != 6 {
			return fmt.Errorf("list: %s", body)
		}
		return nil
	})
	var ids []string
	for _, r := range list.Rollouts {
		ids = append(ids, r.ID)
	}
	if want := []string{"new-one", "mid", "old"}; !slices.Equal(ids, want) {
		t.Fatalf("list order %q, want newest first %q", ids, want)
	}
	if want := (fleet.WaveCounts{Devices: 6, Succeeded: 1, Failed: 1, InProgress: 2, Waiting: 2}); list.Rollouts[1].Counts != want {
		t.Errorf("mid counts %+v, want %+v", list.Rollouts[1].Counts, want)
	}
	if strings.Contains(body, `"members"`) {
		t.Errorf("the list shows members: %s", body)
	}

	status, body := a.send(t, "GET", "/api/v1/rollouts/mid", "")
	if r := rolloutOf(t, status, body, 200); r.Members != nil || r.Counts.Devices != 6 {
		t.Errorf("get mid: members %v, counts %+v", r.Members, r.Counts)
	}
	status, body = a.send(t, "GET", "/api/v1/rollouts/mid?members=1", "")
	if r := rolloutOf(t, status, body, 200); len(r.Members) != 2 || r.Members["k2"] != (fleet.Member{Wave: 1, From: "0.9"}) {
		t.Errorf("get mid?members=1: members %v", r.Members)
	}
	for _, tt := range []struct {
		path string
		want int
	}{
		{"/api/v1/rollouts/nope", 404},
		{"/api/v1/rollouts/NOPE", 404},
		{"/api/v1/rollouts/mid?members=yes", 400},
	} {
		if status, body := a.send(t, "GET", tt.path, ""); status != tt.want || !strings.Contains(body, `"error"`) {
			t.Errorf("GET %s: %d %s, want %d with an error", tt.path, status, body, tt.want)
		}
	}
}

func TestRolloutsAPIActions(t *testing.T) {
	a := newAPITest(t)
	status, body := a.send(t, "POST", "/api/v1/rollouts", `{"id":"r1","version":"1.3.0"}`)
	rolloutOf(t, status, body, http.StatusCreated)

	steps := []struct {
		method, path, body string
		want               int
		state              fleet.RolloutState
		version, reason    string
	}{
		{"DELETE", "/api/v1/rollouts/r1", "", 409, fleet.RolloutRunning, "1.3.0", ""},
		{"POST", "/api/v1/rollouts/r1/resume", "", 409, fleet.RolloutRunning, "1.3.0", ""},
		{"POST", "/api/v1/rollouts/r1/pause", `{"reason":"checking the canary by hand"}`, 200, fleet.RolloutPaused, "1.3.0", "checking the canary by hand"},
		{"POST", "/api/v1/rollouts/r1/pause", "", 409, fleet.RolloutPaused, "1.3.0", "checking the canary by hand"},
		{"POST", "/api/v1/rollouts/r1/resume", "", 200, fleet.RolloutRunning, "1.3.0", ""},
		{"POST", "/api/v1/rollouts/r1/pause", "", 200, fleet.RolloutPaused, "1.3.0", "paused by an operator (API)"},
		{"POST", "/api/v1/rollouts/r1/release", `{"version":"1.3.0"}`, 400, fleet.RolloutPaused, "1.3.0", "paused by an operator (API)"},
		{"POST", "/api/v1/rollouts/r1/release", `{"version":"not a version!"}`, 400, fleet.RolloutPaused, "1.3.0", "paused by an operator (API)"},
		{"POST", "/api/v1/rollouts/r1/release", ``, 400, fleet.RolloutPaused, "1.3.0", "paused by an operator (API)"},
		{"POST", "/api/v1/rollouts/r1/release", `{"version":"1.3.1"}`, 200, fleet.RolloutPaused, "1.3.1", "paused by an operator (API)"},
		{"POST", "/api/v1/rollouts/r1/pause", `{"reasons":"typo"}`, 400, fleet.RolloutPaused, "1.3.1", "paused by an operator (API)"},
		{"POST", "/api/v1/rollouts/r1/abort", `{"reason":"bad release"}`, 200, fleet.RolloutAborted, "1.3.1", "bad release"},
		{"POST", "/api/v1/rollouts/r1/pause", "", 409, fleet.RolloutAborted, "1.3.1", "bad release"},
		{"POST", "/api/v1/rollouts/r1/resume", "", 409, fleet.RolloutAborted, "1.3.1", "bad release"},
		{"POST", "/api/v1/rollouts/r1/abort", "", 409, fleet.RolloutAborted, "1.3.1", "bad release"},
		{"POST", "/api/v1/rollouts/r1/release", `{"version":"1.3.2"}`, 409, fleet.RolloutAborted, "1.3.1", "bad release"},
		{"POST", "/api/v1/rollouts/r1/rollback", "", 200, fleet.RolloutRolledBack, "1.3.1", "rolled back by an operator (API)"},
		{"POST", "/api/v1/rollouts/r1/rollback", "", 409, fleet.RolloutRolledBack, "1.3.1", "rolled back by an operator (API)"},
	}
	for _, s := range steps {
		status, body := a.send(t, s.method, s.path, s.body)
		if status != s.want || !strings.HasPrefix(body, "{") {
			t.Fatalf("%s %s %s: %d %s, want %d", s.method, s.path, s.body, status, body, s.want)
		}
		if s.want == 200 {
			r := rolloutOf(t, status, body, 200)
			if r.State != s.state || r.Version != s.version || r.Reason != s.reason {
				t.Errorf("%s %s: answered %s %s %q", s.method, s.path, r.State, r.Version, r.Reason)
			}
		}
		// What an action wrote is what the next read shows, at once.
		status, body = a.send(t, "GET", "/api/v1/rollouts/r1", "")
		r := rolloutOf(t, status, body, 200)
		if r.State != s.state || r.Version != s.version || r.Reason != s.reason {
			t.Errorf("after %s %s %s: GET shows %s %s %q, want %s %s %q", s.method, s.path, s.body, r.State, r.Version, r.Reason, s.state, s.version, s.reason)
		}
	}
	status, body = a.send(t, "DELETE", "/api/v1/rollouts/r1", "")
	if status != 200 {
		t.Fatalf("delete a rolled back rollout: %d %s", status, body)
	}
	if status, _ := a.send(t, "GET", "/api/v1/rollouts/r1", ""); status != 404 {
		t.Errorf("GET after the delete: %d, want 404", status)
	}
	for _, action := range []string{"pause", "resume", "abort", "rollback", "release"} {
		if status, body := a.send(t, "POST", "/api/v1/rollouts/r1/"+action, `{"version":"2.0"}`); status != 404 {
			t.Errorf("%s of a deleted rollout: %d %s, want 404", action, status, body)
		}
	}
	if status, _ := a.send(t, "DELETE", "/api/v1/rollouts/r1", ""); status != 404 {
		t.Errorf("second delete: %d, want 404", status)
	}

	// One audit entry for each action done, none for the refused ones.
	var got []string
	for _, e := range auditActions(t, a) {
		got = append(got, e.Action+" "+e.Target+" "+e.Detail)
	}
	want := []string{
		"rollout.create r1 version 1.3.0 to all devices, waves canary:10%,half:50%,all:100%",
		"rollout.pause r1 checking the canary by hand",
		"rollout.resume r1 ",
		"rollout.pause r1 paused by an operator (API)",
		"rollout.release r1 1.3.0 → 1.3.1",
		"rollout.abort r1 bad release",
		"rollout.rollback r1 rolled back by an operator (API)",
		"rollout.delete r1 rolled_back, version 1.3.1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRolloutsAPIAuth: every rollout endpoint wants the admin token.
func TestRolloutsAPIAuth(t *testing.T) {
	a := newAPITest(t)
	for _, tt := range []struct{ method, path string }{
		{"GET", "/api/v1/rollouts"}, {"POST", "/api/v1/rollouts"}, {"GET", "/api/v1/rollouts/r1"},
		{"DELETE", "/api/v1/rollouts/r1"}, {"POST", "/api/v1/rollouts/r1/pause"}, {"POST", "/api/v1/rollouts/r1/release"},
	} {
		req, _ := http.NewRequest(tt.method, a.srv.URL+tt.path, strings.NewReader(`{"id":"r1","version":"1.0"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %s, want 401", tt.method, tt.path, resp.Status)
		}
	}
	if rs, _ := a.store.Rollouts(context.Background()); len(rs) != 0 {
		t.Errorf("a request without a token created %d rollouts", len(rs))
	}
}

// TestAwaitWritten: an action waits until the hub shows what it wrote,
// so the page it leads to and the next API read show it; it does not
// wait for longer.
func TestAwaitWritten(t *testing.T) {
	_, _, st := startStore(t)
	h := newHub(st, slog.New(slog.DiscardHandler))
	t.Cleanup(h.Close)
	ctx := context.Background()
	h.Begin(ctx)
	ro, err := fleet.NewRollout(fleet.RolloutSpec{ID: "r1", Version: "1.0"}, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan time.Time, 1)
	go func() { h.awaitWritten(ctx, ro); done <- time.Now() }()
	select {
	case <-done:
		t.Fatal("returned before the hub had the rollout")
	case <-time.After(200 * time.Millisecond):
	}
	wrote := time.Now()
	if err := st.CreateRollout(ctx, ro); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-done:
		if got, err := h.Rollout(ctx, "r1"); err != nil || !got.Updated.Equal(ro.Updated) {
			t.Errorf("returned with the hub showing %+v, %v", got, err)
		}
		t.Logf("returned %s after the write", at.Sub(wrote))
	case <-time.After(sawWrite - 500*time.Millisecond):
		t.Fatal("still waiting after the hub had the rollout")
	}
	// An older copy does not satisfy a later write.
	later := ro
	later.Updated = ro.Updated.Add(time.Second)
	start := time.Now()
	h.awaitWritten(ctx, later)
	if waited := time.Since(start); waited < sawWrite {
		t.Errorf("returned after %s for a write the hub never saw, want %s", waited, sawWrite)
	}
}
