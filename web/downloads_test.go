package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/downloadlink"
	"github.com/thinfleet/thinfleet/fleet"
)

var testLinkKey = []byte("web-test-download-link-key")

// newDownloadTest serves one release, "kiosk app 1.0.zip", from a web
// server with linkKey, over a real broker's state.
func newDownloadTest(t *testing.T, linkKey []byte) (srv *httptest.Server, content string) {
	t.Helper()
	_, _, store := startStore(t)
	ctx := context.Background()
	updates := t.TempDir()
	content = strings.Repeat("zip bytes ", 1000)
	if err := os.WriteFile(filepath.Join(updates, "kiosk app 1.0.zip"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := store.PutCatalog(ctx, fleet.Catalog{
		Releases: []fleet.Release{{Name: "K", Version: "1.0", SHA256: strings.Repeat("ab", 32), Size: int64(len(content)), Command: "true", File: "kiosk app 1.0.zip"}},
		Target:   "1.0",
	}); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Log: slog.New(slog.DiscardHandler), Store: store, UpdatesDir: updates, AdminToken: testToken,
		PublicURL: "http://fleet.example:8080", LinkKey: linkKey})
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, content
}

// fetch GETs path with the given headers through client.
func fetch(t *testing.T, client *http.Client, srv *httptest.Server, path string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestDownloadNeedsALink attacks the downloads with every kind of bad
// link: each is refused with 403, while a valid link, the admin token and
// a session download.
func TestDownloadNeedsALink(t *testing.T) {
	srv, content := newDownloadTest(t, testLinkKey)
	const file = "kiosk app 1.0.zip"
	now := time.Now()
	valid := downloadlink.Path(testLinkKey, file, now.Add(time.Hour))
	u, _ := url.Parse(valid)
	q := u.Query()
	with := func(edit func(q url.Values)) string {
		q2 := url.Values{}
		for k, v := range q {
			q2[k] = append([]string(nil), v...)
		}
		edit(q2)
		return u.EscapedPath() + "?" + q2.Encode()
	}
	bearer := map[string]string{"Authorization": "Bearer " + testToken}

	tests := []struct {
		name   string
		path   string
		header map[string]string
		status int
		reason string // in the body of a refusal
	}{
		{"valid link", valid, nil, 200, ""},
		{"valid link, resumed", valid, map[string]string{"Range": "bytes=100-"}, 206, ""},
		{"admin token, no link", u.EscapedPath(), bearer, 200, ""},
		{"no link", u.EscapedPath(), nil, 403, "not a signed link"},
		{"expired", downloadlink.Path(testLinkKey, file, now.Add(-time.Second)), nil, 403, "expired"},
		{"expiry pushed back, signature kept", with(func(q url.Values) { q.Set("exp", "99999999999") }), nil, 403, "does not match"},
		{"signature flipped", with(func(q url.Values) {
			sig := []byte(q.Get("sig"))
			sig[0] ^= 1
			q.Set("sig", string(sig))
		}), nil, 403, "does not match"},
		{"signature missing", with(func(q url.Values) { q.Del("sig") }), nil, 403, "does not match"},
		{"expiry missing", with(func(q url.Values) { q.Del("exp") }), nil, 403, "does not match"},
		{"signature not hex", with(func(q url.Values) { q.Set("sig", "zz") }), nil, 403, "does not match"},
		{"valid link to a file that is no release", downloadlink.Path(testLinkKey, "other.zip", now.Add(time.Hour)), nil, 404, ""},
		{"another file's signature on this file", u.EscapedPath() + "?" + mustQuery(downloadlink.Path(testLinkKey, "other.zip", now.Add(time.Hour))),
			nil, 403, "does not match"},
		{"signed with another key", downloadlink.Path([]byte("not the server's link key"), file, now.Add(time.Hour)), nil, 403, "does not match"},
		{"wrong admin token", u.EscapedPath(), map[string]string{"Authorization": "Bearer guess"}, 403, "not a signed link"},
		{"wrong token, valid link", valid, map[string]string{"Authorization": "Bearer guess"}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := fetch(t, http.DefaultClient, srv, tt.path, tt.header)
			if status != tt.status {
				t.Fatalf("GET %s: %d %q, want %d", tt.path, status, body, tt.status)
			}
			switch {
			case status == 200 && body != content:
				t.Errorf("body is %d bytes, want the zip's %d", len(body), len(content))
			case status == 206 && body != content[100:]:
				t.Errorf("resumed body is %d bytes, want %d", len(body), len(content)-100)
			case status == 403 && (!strings.Contains(body, tt.reason) || strings.Contains(body, "zip bytes")):
				t.Errorf("refusal %q, want it to say %q", body, tt.reason)
			}
		})
	}
}

func mustQuery(path string) string {
	u, err := url.Parse(path)
	if err != nil {
		panic(err)
	}
	return u.RawQuery
}

// TestDownloadWithSession: the dashboard's own links work for a signed-in
// browser, and stop working once it signs out.
func TestDownloadWithSession(t *testing.T) {
	srv, content := newDownloadTest(t, testLinkKey)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	const path = "/downloads/kiosk%20app%201.0.zip"

	if status, _ := fetch(t, browser, srv, path, nil); status != 403 {
		t.Fatalf("before signing in: %d, want 403", status)
	}
	resp, err := browser.PostForm(srv.URL+"/login", url.Values{"token": {testToken}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if status, body := fetch(t, browser, srv, path, nil); status != 200 || body != content {
		t.Fatalf("signed in: %d, %d bytes; want 200 and the zip", status, len(body))
	}
	stale := jar.Cookies(mustURL(srv.URL))
	resp, err = browser.PostForm(srv.URL+"/logout", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The cookie of the ended session, replayed by hand.
	old := &http.Client{}
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	for _, c := range stale {
		req.AddCookie(c)
	}
	resp, err = old.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(stale) == 0 || resp.StatusCode != 403 {
		t.Errorf("stale session cookie (%d cookies): %d, want 403", len(stale), resp.StatusCode)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestDownloadWithoutLinkKey: a server without a link key honours no link
// at all, however it looks; the token still works.
func TestDownloadWithoutLinkKey(t *testing.T) {
	srv, _ := newDownloadTest(t, nil)
	link := downloadlink.Path(nil, "kiosk app 1.0.zip", time.Now().Add(time.Hour))
	if status, body := fetch(t, http.DefaultClient, srv, link, nil); status != 403 || !strings.Contains(body, "no download link key") {
		t.Errorf("link without a key: %d %q, want 403", status, body)
	}
	if status, _ := fetch(t, http.DefaultClient, srv, link, map[string]string{"Authorization": "Bearer " + testToken}); status != 200 {
		t.Errorf("token without a key: %d, want 200", status)
	}
}
