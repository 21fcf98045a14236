package web

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// testToken is strong enough for New: 32 hex characters, 128 bits.
const testToken = "5f0c9a7e3b1d48e2a6c4f09b7d3e1a58"

// apiTest is a web server over a real embedded broker's state.
type apiTest struct {
	store   *store.Store
	srv     *httptest.Server
	updates string
}

func newAPITest(t *testing.T) *apiTest {
	t.Helper()
	_, _, store := startStore(t)
	a := &apiTest{store: store, updates: t.TempDir()}
	s, err := New(Options{Log: slog.New(slog.DiscardHandler), Store: store, UpdatesDir: a.updates, AdminToken: testToken, PublicURL: "http://fleet.example:8080/"})
	if err != nil {
		t.Fatal(err)
	}
	a.srv = httptest.NewServer(s.Handler())
	t.Cleanup(a.srv.Close)
	return a
}

func (a *apiTest) do(t *testing.T, path string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", a.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestAPIAuth(t *testing.T) {
	a := newAPITest(t)
	tests := []struct {
		path, auth string
		want       int
	}{
		{"/api/v1/devices", "", http.StatusUnauthorized},
		{"/api/v1/devices", "Bearer wrong", http.StatusUnauthorized},
		{"/api/v1/devices", testToken, http.StatusUnauthorized}, // no "Bearer "
		{"/api/v1/devices", "Bearer " + testToken, http.StatusOK},
		{"/api/v1/history", "", http.StatusUnauthorized},
		{"/healthz", "", http.StatusOK},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", a.srv.URL+tt.path, nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s with %q: %d, want %d", tt.path, tt.auth, resp.StatusCode, tt.want)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff header", tt.path)
		}
	}
}

func TestAPIDevicesAndHistory(t *testing.T) {
	a := newAPITest(t)
	ctx := context.Background()
	for _, id := range []string{"b-kiosk", "a-kiosk"} {
		if _, err := a.store.UpdateDevice(ctx, id, func(d *fleet.Device) error {
			d.Hostname, d.Alive, d.Version = id+".local", true, "1.2"
			d.Hardware = wire.Hardware{Hostname: id + ".local", CPUModel: "Atom", CPUCores: 4, MemoryTotal: 4 << 30, OS: "linux", Platform: "debian", Arch: "amd64"}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, kind := range []fleet.EventKind{fleet.EventOffered, fleet.EventInstalled} {
			if err := a.store.AppendEvent(ctx, fleet.Event{Device: id, Event: kind, Version: "1.2"}, ""); err != nil {
				t.Fatal(err)
			}
		}
	}

	_, body := a.do(t, "/api/v1/devices", nil)
	var ds []map[string]any
	if err := json.Unmarshal([]byte(body), &ds); err != nil {
		t.Fatalf("devices: %v in %s", err, body)
	}
	if len(ds) != 2 || ds[0]["id"] != "a-kiosk" {
		t.Fatalf("devices = %s, want a-kiosk then b-kiosk", body)
	}
	for _, key := range []string{"id", "hostname", "alive", "version", "last_seen", "hardware"} {
		if _, ok := ds[0][key]; !ok {
			t.Errorf("device has no %q: %s", key, body)
		}
	}
	hw := ds[0]["hardware"].(map[string]any)
	for _, key := range []string{"cpu_model", "cpu_cores", "memory_total", "os", "platform", "arch"} {
		if _, ok := hw[key]; !ok {
			t.Errorf("hardware has no %q", key)
		}
	}

	if resp, _ := a.do(t, "/api/v1/devices/nobody", nil); resp.StatusCode != 404 {
		t.Errorf("unknown device: %d, want 404", resp.StatusCode)
	}
	if resp, _ := a.do(t, "/api/v1/devices/a-kiosk", nil); resp.StatusCode != 200 {
		t.Errorf("known device: %d, want 200", resp.StatusCode)
	}

	tests := []struct {
		query string
		want  []string // device/event, newest first
	}{
		{"device=a-kiosk", []string{"a-kiosk/installed", "a-kiosk/offered"}},
		{"event=offered", []string{"a-kiosk/offered", "b-kiosk/offered"}},
		{"limit=1", []string{"a-kiosk/installed"}},
		{"version=9.9", nil},
	}
	for _, tt := range tests {
		_, body := a.do(t, "/api/v1/history?"+tt.query, nil)
		var evs []fleet.Event
		if err := json.Unmarshal([]byte(body), &evs); err != nil {
			t.Fatalf("history?%s: %v in %s", tt.query, err, body)
		}
		var got []string
		for _, e := range evs {
			got = append(got, e.Device+"/"+string(e.Event))
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("history?%s = %v, want %v", tt.query, got, tt.want)
		}
	}
	for _, bad := range []string{"device=../x", "limit=0", "limit=abc"} {
		if resp, _ := a.do(t, "/api/v1/history?"+bad, nil); resp.StatusCode != 400 {
			t.Errorf("history?%s: %d, want 400", bad, resp.StatusCode)
		}
	}
}

func TestDownloads(t *testing.T) {
	a := newAPITest(t)
	content := strings.Repeat("0123456789", 1000)
	if err := os.WriteFile(filepath.Join(a.updates, "update-1.0.zip"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.updates, "secret.txt"), []byte("private"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := strings.Repeat("ab", 32)
	if err := a.store.PutCatalog(context.Background(), fleet.Catalog{
		Releases: []fleet.Release{{Name: "U", Version: "1.0", SHA256: sum, Size: int64(len(content)), Command: "true", File: "update-1.0.zip"}},
		Target:   "1.0",
	}); err != nil {
		t.Fatal(err)
	}

	resp, body := a.do(t, "/downloads/update-1.0.zip", nil)
	if resp.StatusCode != 200 || body != content || resp.Header.Get("ETag") != `"`+sum+`"` {
		t.Errorf("full download: %d, %d bytes, ETag %q", resp.StatusCode, len(body), resp.Header.Get("ETag"))
	}
	resp, body = a.do(t, "/downloads/update-1.0.zip", map[string]string{"Range": "bytes=9990-"})
	if resp.StatusCode != http.StatusPartialContent || body != content[9990:] {
		t.Errorf("range download: %d, %q", resp.StatusCode, body)
	}
	resp, _ = a.do(t, "/downloads/update-1.0.zip", map[string]string{"If-None-Match": `"` + sum + `"`})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", resp.StatusCode)
	}
	for _, p := range []string{"/downloads/secret.txt", "/downloads/..%2fsecret.txt", "/downloads/nothing.zip"} {
		if resp, _ := a.do(t, p, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}

	_, body = a.do(t, "/api/v1/updates", nil)
	var ups []map[string]any
	if err := json.Unmarshal([]byte(body), &ups); err != nil {
		t.Fatal(err)
	}
	if len(ups) != 1 || ups[0]["url"] != "http://fleet.example:8080/downloads/update-1.0.zip" || ups[0]["target"] != true {
		t.Errorf("updates = %s", body)
	}
	for _, key := range []string{"name", "version", "sha256", "size", "command", "url"} {
		if _, ok := ups[0][key]; !ok {
			t.Errorf("update has no %q", key)
		}
	}
}
