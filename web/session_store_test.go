package web

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestSessionsAreShared signs in on one web server and uses the cookie on
// a second one over the same store (a restart, or a second container):
// the session holds there, and signing out on the second ends it on the
// first too.
func TestSessionsAreShared(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	u, _ := url.Parse(p.srv.URL)
	cookie := p.client.Jar.Cookies(u)[0]

	other, err := New(Options{Log: slog.New(slog.DiscardHandler), Store: p.store, UpdatesDir: p.updates, AdminToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	get := func(h http.Handler, path string) int {
		req := httptest.NewRequest("GET", path, nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := get(other.Handler(), "/downloads"); code != http.StatusOK {
		t.Fatalf("the second server: GET /downloads with the first's session: %d, want 200", code)
	}

	req := httptest.NewRequest("POST", "/logout", nil)
	req.AddCookie(cookie)
	other.Handler().ServeHTTP(httptest.NewRecorder(), req)
	if code := get(p.web.Handler(), "/downloads"); code != http.StatusSeeOther {
		t.Errorf("the first server after signing out on the second: %d, want 303 to the login", code)
	}
}
