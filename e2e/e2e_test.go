// Package e2e runs thinfleet as a user does: the real server and agent
// binaries as separate processes, real zips, real HTTP.
package e2e

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "thinfleet-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, pkg := range []string{"thinfleet", "thinfleet-agent"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, pkg), "../cmd/"+pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg, ":", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	adminToken  = "e2e-9b4f1c7a2d6e8035f1a9c4b7e2d6"
	enrollToken = "e2e-enroll-token"
)

// server is a running "thinfleet server" process.
type server struct {
	t        *testing.T
	cmd      *exec.Cmd
	data     string
	updates  string
	natsURL  string
	httpURL  string
	logPath  string
	exited   chan struct{}
	natsAddr string
	httpAddr string
	// client makes the API calls; it trusts the test's CA under TLS.
	client *http.Client
}

var (
	natsLine = regexp.MustCompile(`agents connect to: nats://(\S+)`)
	httpLine = regexp.MustCompile(`api and downloads: (https?://\S+)`)
)

// startServer starts the server on data and updates folders, on the given
// addresses ("127.0.0.1:0" picks free ports), and waits until it is up.
func startServer(t *testing.T, data, updates, natsAddr, httpAddr string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, data: data, updates: updates, exited: make(chan struct{})}
	s.logPath = filepath.Join(t.TempDir(), "server.log")
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(filepath.Join(binDir, "thinfleet"),
		append([]string{"server", "--data", data, "--updates", updates, "--nats", natsAddr, "--http", httpAddr, "--rescan", "2s"}, extra...)...)
	s.cmd.Env = append(os.Environ(), "THINFLEET_ADMIN_TOKEN="+adminToken, "THINFLEET_ENROLL_TOKEN="+enrollToken)
	s.cmd.Stderr = logf
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fmt.Fprintln(logf, "stdout:", sc.Text())
			select {
			case lines <- sc.Text():
			default:
			}
		}
		s.cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	t.Cleanup(func() { s.kill(); s.dumpLogOnFailure() })
	deadline := time.After(60 * time.Second)
	for s.natsAddr == "" || s.httpAddr == "" {
		select {
		case l := <-lines:
			if m := natsLine.FindStringSubmatch(l); m != nil {
				s.natsAddr = m[1]
			}
			if m := httpLine.FindStringSubmatch(l); m != nil {
				s.httpURL = m[1]
				s.httpAddr = strings.TrimPrefix(strings.TrimPrefix(m[1], "http://"), "https://")
			}
		case <-s.exited:
			t.Fatalf("server exited at start; log:\n%s", readFile(s.logPath))
		case <-deadline:
			t.Fatalf("server did not print its addresses within 60s; log:\n%s", readFile(s.logPath))
		}
	}
	s.natsURL = "nats://" + s.natsAddr
	return s
}

func (s *server) kill() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
	}
}

func (s *server) dumpLogOnFailure() {
	if s.t.Failed() {
		s.t.Logf("server log (%s):\n%s", s.logPath, tail(readFile(s.logPath), 12000))
	}
}

// get fetches an API path with the admin token into v.
func (s *server) get(path string, v any) error {
	req, _ := http.NewRequest("GET", s.httpURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	client := s.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

// agent is a running thinfleet-agent process.
type agent struct {
	id      string
	state   string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

func startAgent(t *testing.T, id, natsURL, state string, extra ...string) *agent {
	t.Helper()
	a := &agent{id: id, state: state, exited: make(chan struct{})}
	a.logPath = filepath.Join(t.TempDir(), id+".log")
	logf, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(filepath.Join(binDir, "thinfleet-agent"),
		append([]string{"--server", natsURL, "--state", state, "--id", id, "--heartbeat", "1s"}, extra...)...)
	a.cmd.Env = append(os.Environ(), "THINFLEET_ENROLL_TOKEN="+enrollToken)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); logf.Close(); close(a.exited) }()
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			t.Logf("agent %s log:\n%s", id, tail(readFile(a.logPath), 6000))
		}
	})
	return a
}

func (a *agent) kill() {
	if a.cmd.Process != nil {
		_ = a.cmd.Process.Signal(syscall.SIGKILL)
		<-a.exited
	}
}

// waitFor polls cond until it holds or the deadline passes; cond returns
// what it saw, for the failure message.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < timeout {
		ok, seen := cond()
		if ok {
			return time.Since(start)
		}
		last = seen
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last seen: %s", what, timeout, last)
	return 0
}

// writeZip makes an update zip in dir the way an operator drops one: written
// elsewhere, then renamed into place.
func writeZip(t *testing.T, dir, file string, manifest map[string]string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	m, _ := json.Marshal(manifest)
	entries := map[string]string{"manifest.json": string(m)}
	for k, v := range files {
		entries[k] = v
	}
	for name, body := range entries {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+file+".tmp")
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		t.Fatal(err)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func summary[T any](items []T, f func(T) string) string {
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = f(it)
	}
	return strings.Join(parts, ", ")
}
