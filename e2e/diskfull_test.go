package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readyz is the HTTP status of the server's /readyz.
func (s *server) readyz() int {
	resp, err := http.Get(s.httpURL + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRecoversFromFullDisk runs the server on a data folder of its own
// small tmpfs and fills it. JetStream's store then fails every write to
// the streams it could not write, even once there is room again; so
// /readyz must say not ready while the disk is full, and once the disk
// has room the server must end by itself, for its supervisor (here, the
// test) to start it again: then it is ready, the agent is back, and
// nothing acknowledged before the fault is lost.
func TestRecoversFromFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binaries")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	root := t.TempDir()
	disk := filepath.Join(root, "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Skipf("mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", disk).Run() })
	data, updates := filepath.Join(disk, "data"), filepath.Join(root, "updates")
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	srv := startServer(t, data, updates, natsAddr, httpAddr)
	state := filepath.Join(root, "state")
	ag := startAgent(t, "disk-1", srv.natsURL, state)
	waitFor(t, 30*time.Second, "the agent alive", allOn(srv, t, []string{"disk-1"}, ""))
	var before []event
	waitFor(t, 30*time.Second, "the agent's connection in the history", func() (bool, string) {
		_ = srv.get("/api/v1/history?device=disk-1", &before)
		return len(before) > 0, fmt.Sprint(len(before), " events")
	})

	// Fill the disk to the last byte.
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < 64; i++ {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the disk: %v", err)
			}
			break
		}
	}
	f.Close()
	// The agent comes back and reports: writes the full disk refuses.
	ag.kill()
	ag = startAgent(t, "disk-1", srv.natsURL, state)
	waitFor(t, 30*time.Second, "/readyz not ready on the full disk", func() (bool, string) {
		code := srv.readyz()
		return code == http.StatusServiceUnavailable, fmt.Sprint(code)
	})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the server did not end by itself once the disk had room; log:\n%s", tail(readFile(srv.logPath), 4000))
	}
	t.Logf("MEASURED: server log at its end:\n%s", tail(readFile(srv.logPath), 1500))
	if code := srv.cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("the server ended with status 0 after a store fault: its supervisor may not restart it")
	}
	if log := readFile(srv.logPath); !strings.Contains(log, "JetStream write fault") {
		t.Errorf("the fault was not logged as such; log:\n%s", tail(log, 3000))
	}

	srv = startServer(t, data, updates, natsAddr, httpAddr)
	waitFor(t, 60*time.Second, "/readyz ready after the restart", func() (bool, string) {
		code := srv.readyz()
		return code == http.StatusOK, fmt.Sprint(code)
	})
	waitFor(t, 60*time.Second, "the agent alive after the restart", allOn(srv, t, []string{"disk-1"}, ""))
	var after []event
	if err := srv.get("/api/v1/history?device=disk-1", &after); err != nil {
		t.Fatal(err)
	}
	have := map[uint64]bool{}
	for _, e := range after {
		have[e.Seq] = true
	}
	for _, e := range before {
		if !have[e.Seq] {
			t.Errorf("history event %d (%s) from before the fault is gone", e.Seq, e.Event)
		}
	}
}
