package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestShutdownOnSIGTERM: the server with an agent connected stops on
// SIGTERM, stops taking work, finishes what is in flight and exits 0
// within its shutdown deadline (10s), with margin.
func TestShutdownOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binaries")
	}
	root := t.TempDir()
	srv := startServer(t, filepath.Join(root, "data"), filepath.Join(root, "updates"), "127.0.0.1:0", "127.0.0.1:0")
	startAgent(t, "sigterm-agent", srv.natsURL, filepath.Join(root, "state"))
	waitFor(t, 30*time.Second, "the agent alive", func() (bool, string) {
		ds := srv.devices(t)
		return len(ds) == 1 && ds[0].Alive, showDevices(ds)
	})

	// The metrics of the whole server, while it runs: every name is
	// thinfleet's, or the Go runtime's and the process's standard ones,
	// and the page passes promtool.
	var page string
	if err := (api{base: srv.httpURL}).get("/metrics", &page); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(page, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "thinfleet_") &&
			!strings.HasPrefix(line, "go_") && !strings.HasPrefix(line, "process_") {
			t.Errorf("metric not named thinfleet_, go_ or process_: %s", line)
		}
	}
	for _, want := range []string{`thinfleet_devices{presence="alive"} 1`, "thinfleet_broker_connections{", "thinfleet_http_request_duration_seconds_bucket{",
		"\ngo_goroutines ", "\nprocess_resident_memory_bytes "} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	promtool(t, page)

	start := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("server still running 15s after SIGTERM")
	}
	took := time.Since(start)
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0; log:\n%s", code, tail(readFile(srv.logPath), 3000))
	}
	t.Logf("MEASURED: SIGTERM to exit: %s", took.Round(10*time.Millisecond))
}
