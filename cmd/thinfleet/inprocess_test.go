package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// get asks the server at base for path, with the admin token when token
// is set, and returns the status and the body.
func get(t *testing.T, base, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// No kept-alive connection outlives the request: the goroutine count
	// after the server stops is the server's alone.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// publish drops an update zip of version into the updates folder, as an
// operator does: written aside, then renamed in.
func publish(t *testing.T, updates, version string) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), "update.zip")
	writeTestZip(t, tmp, `{"name": "Update", "version": "`+version+`", "command": "true"}`)
	if err := os.Rename(tmp, filepath.Join(updates, "update-"+version+".zip")); err != nil {
		t.Fatal(err)
	}
}

// ownGoroutines are the goroutines, other than the caller's, running
// code of thinfleet or of NATS (the embedded server and its clients).
func ownGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var own []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue // the caller's
		}
		if strings.Contains(g, "github.com/thinfleet/thinfleet/") || strings.Contains(g, "github.com/nats-io/") {
			own = append(own, g)
		}
	}
	return own
}

var brokerServer = regexp.MustCompile(`(?m)^thinfleet_broker_connections\{server="([^"]*)"\} `)

// TestServerInProcess runs "thinfleet server" inside the test, as main
// runs it: on free ports with new data and updates folders. It answers
// its health check and an authenticated API call, publishes a zip
// dropped in its updates folder, serves the Go runtime's and the
// process's metrics under their standard names, and once its context
// ends, run returns nil within its shutdown deadline, leaving none of
// its goroutines behind.
func TestServerInProcess(t *testing.T) {
	before := len(ownGoroutines())
	data := filepath.Join(t.TempDir(), "data")
	s := startServer(t, data, nil)
	token := readToken(t, filepath.Join(data, "admin.token"))

	if code, body := get(t, s.api, "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, _ := get(t, s.api, "/api/v1/devices", ""); code != http.StatusUnauthorized {
		t.Errorf("/api/v1/devices without the token: %d, want 401", code)
	}
	if code, body := get(t, s.api, "/api/v1/devices", token); code != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Errorf("/api/v1/devices: %d %s, want 200 and no device", code, body)
	}

	publish(t, filepath.Join(data, "updates"), "1.2.0")
	waitFor(t, "the update in /api/v1/updates", func() (bool, string) {
		code, body := get(t, s.api, "/api/v1/updates", token)
		var ups []struct{ Version, URL string }
		if code != http.StatusOK || json.Unmarshal([]byte(body), &ups) != nil {
			return false, body
		}
		return len(ups) == 1 && ups[0].Version == "1.2.0" && strings.HasPrefix(ups[0].URL, s.api+"/downloads/"), body
	})

	_, page := get(t, s.api, "/metrics", "")
	for _, want := range []string{"\ngo_goroutines ", "\nprocess_resident_memory_bytes ", "\nthinfleet_catalog_releases 1\n"} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(page, "thinfleet_go_") || strings.Contains(page, "thinfleet_process_") {
		t.Error("/metrics still serves the Go runtime's or the process's metrics behind thinfleet_")
	}

	start := time.Now()
	if err := s.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("run returned %v after its context ended", time.Since(start).Round(time.Millisecond))
	waitFor(t, "the server's goroutines ended", func() (bool, string) {
		left := ownGoroutines()
		return len(left) <= before, fmt.Sprintf("%d goroutines, %d before the server started; the first:\n%s",
			len(left), before, strings.Join(left[:min(len(left), 3)], "\n\n"))
	})
}

// TestMetricsPerServer runs two servers in one process: each serves its
// own metrics (a zip published to one is counted by it alone), and the
// broker's are labelled by the host name, the same after a restart on
// the same data folder.
func TestMetricsPerServer(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Skipf("no host name: %v", err)
	}
	dataA, dataB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	a := startServer(t, dataA, nil)
	b := startServer(t, dataB, nil)
	publish(t, filepath.Join(dataA, "updates"), "1.0.0")
	var page string
	waitFor(t, "server a counting its release", func() (bool, string) {
		_, page = get(t, a.api, "/metrics", "")
		return strings.Contains(page, "\nthinfleet_catalog_releases 1\n"), ""
	})
	serverLabel := func(page string) string {
		m := brokerServer.FindStringSubmatch(page)
		if m == nil {
			return "(none)"
		}
		return m[1]
	}
	if got := serverLabel(page); got != host {
		t.Errorf("server a's broker metrics labelled server=%q, want the host name %q", got, host)
	}
	if _, pageB := get(t, b.api, "/metrics", ""); !strings.Contains(pageB, "\nthinfleet_catalog_releases 0\n") {
		t.Errorf("server b counts server a's release:\n%s", grepLines(pageB, "thinfleet_catalog_"))
	}

	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
	again := startServer(t, dataA, nil)
	waitFor(t, "the restarted server's broker metrics", func() (bool, string) {
		_, page = get(t, again.api, "/metrics", "")
		return brokerServer.MatchString(page), grepLines(page, "thinfleet_broker_")
	})
	if got := serverLabel(page); got != host {
		t.Errorf("after a restart, the broker metrics are labelled server=%q, want %q as before", got, host)
	}
}

// grepLines returns the lines of page that start with prefix.
func grepLines(page, prefix string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, prefix) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
