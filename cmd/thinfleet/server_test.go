package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds or the deadline passes; cond returns
// what it saw, for the failure message.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var seen string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, seen = cond(); ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within 30s; last seen: %s", what, seen)
}

// testServer is "thinfleet server" running in the test's process.
type testServer struct {
	data string
	out  *syncBuffer // stdout and the log, in the order written
	api  string      // the banner's "api and downloads" URL

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error // what run returned, once stopped
}

var apiLine = regexp.MustCompile(`api and downloads: (\S+)`)

// startServer runs "thinfleet server" on any free ports with data as its
// data folder until the test ends (or stop), and waits for its banner.
func startServer(t *testing.T, data string, env map[string]string) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{data: data, out: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	args := []string{"server", "--data", data, "--updates", filepath.Join(data, "updates"), "--nats", "127.0.0.1:0", "--http", "127.0.0.1:0"}
	go func() { s.done <- run(ctx, args, func(k string) string { return env[k] }, s.out, s.out) }()
	t.Cleanup(func() {
		if err := s.stop(t); err != nil {
			t.Errorf("server: %v", err)
		}
		if t.Failed() {
			t.Logf("server output:\n%s", s.out)
		}
	})
	waitFor(t, "the banner", func() (bool, string) {
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("server ended: %v\n%s", err, s.out)
		default:
		}
		return strings.Contains(s.out.String(), "on each client:"), s.out.String()
	})
	s.api = apiLine.FindStringSubmatch(s.out.String())[1]
	// Stopped before presence has subscribed, presence returns an error
	// (its connection closed under it) instead of nil: the test waits for
	// the last step of a start, so that stopping checks a clean shutdown.
	waitFor(t, "presence subscribed", func() (bool, string) {
		return strings.Contains(s.out.String(), "presence checked with the broker"), ""
	})
	return s
}

// stop cancels run's context and returns what run returned; it fails
// the test if run has not returned within its shutdown deadline (and a
// margin for the parts to see the end of their context).
func (s *testServer) stop(t *testing.T) error {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case s.err = <-s.done:
		case <-time.After(shutdownGrace + 5*time.Second):
			s.err = fmt.Errorf("run did not return within %s of its context ending", shutdownGrace+5*time.Second)
		}
	})
	return s.err
}

func readToken(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// TestBanner starts the server three ways: on a new data folder (the
// tokens generated), on the same folder again (read from it), and with
// the enroll token in the environment. The banner comes before any
// service's log line, and the agent's command line carries the enroll
// token, unless the operator keeps it in the environment.
func TestBanner(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	tests := []struct {
		name      string
		env       map[string]string
		wantToken func() string
		wantNote  string
	}{
		{"generated", nil, func() string { return readToken(t, filepath.Join(data, "enroll.token")) }, ""},
		{"kept in the data folder", nil, func() string { return readToken(t, filepath.Join(data, "enroll.token")) }, ""},
		{"from the environment", map[string]string{"THINFLEET_ENROLL_TOKEN": "env-enroll-token"}, func() string { return "<enroll token>" }, "THINFLEET_ENROLL_TOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, data, tt.env)
			out := s.out.String()
			if first := strings.SplitN(out, "\n", 2)[0]; first != "thinfleet server "+version {
				t.Errorf("first line = %q, want the banner's; output:\n%s", first, out)
			}
			client := regexp.MustCompile(`on each client: +thinfleet-agent --server nats://127\.0\.0\.1:\d+ --enroll-token (<enroll token>|\S+)(.*)`).FindStringSubmatch(out)
			if client == nil {
				t.Fatalf("no agent command line in:\n%s", out)
			}
			if want := tt.wantToken(); client[1] != want {
				t.Errorf("agent command's token = %q, want %q", client[1], want)
			}
			if !strings.Contains(client[2], tt.wantNote) {
				t.Errorf("agent command line ends %q, want it to name %q", client[2], tt.wantNote)
			}
			if strings.Contains(out, "env-enroll-token") {
				t.Errorf("the environment's token printed:\n%s", out)
			}
		})
	}
}
