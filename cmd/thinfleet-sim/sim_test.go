package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tests run the simulator against the real server binary, started
// by the simulator as a separate process, exactly as a benchmark does;
// they assert what every agent did and what the API shows, never how
// fast.

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "thinfleet-sim-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, pkg := range []string{"thinfleet", "thinfleet-sim"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, pkg), "../"+pkg)
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

// decode reads the simulator's JSON figures.
func decode(t *testing.T, out []byte) results {
	t.Helper()
	var r results
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("the simulator's stdout is not one JSON object of figures: %v\n%s", err, out)
	}
	return r
}

// TestQuickFleet is the protocol end to end at 500 agents, in this
// process: every agent enrolls, is shown alive by the API, receives the
// offer of a new release, downloads it over HTTP and verifies its sha256,
// and the API shows it installed; a group closes its connections and the
// API shows them notAlive.
func TestQuickFleet(t *testing.T) {
	const n = 500
	state := t.TempDir()
	args := []string{"--agents", fmt.Sprint(n), "--state", state, "--thinfleet", filepath.Join(binDir, "thinfleet"),
		"--scenarios", "fanout,rollout,disconnect", "--group", "100", "--zip-size", fmt.Sprint(256 << 10),
		"--nginx", "none", "--timeout", "3m"}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	err := run(ctx, args, func(string) string { return "" }, &stdout, &stderr)
	t.Logf("%d agents in %s", n, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, tail(stderr.String(), 6000))
	}
	r := decode(t, stdout.Bytes())
	checks := []struct {
		what      string
		got, want int
	}{
		{"agents with credentials", r.Enroll.Have, n},
		{"agents enrolled by this run", r.Enroll.Fresh, n},
		{"agents alive in the API", r.Connect.Alive, n},
		{"agents offered the fan-out release", r.Fanout.Offered, n},
		{"agents offered the rollout release", r.Rollout.Offered, n},
		{"downloads verified", r.Rollout.Verified, n},
		{"downloads failed", r.Rollout.Failed, 0},
		{"agents the API shows on the new version", r.Rollout.Installed, n},
		{"disconnected agents the API still shows alive", r.Disconnect.StillAlive, 0},
		{"bad offers", int(r.BadOffers), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.what, c.got, c.want)
		}
	}
	if r.Rollout.SizeBytes < 256<<10-1024 {
		t.Errorf("rollout zip: %d bytes, want about 256 KiB", r.Rollout.SizeBytes)
	}

	// A second run on the same state enrolls nobody: the credentials are
	// kept. Its table row is the first run's agents.
	stdout.Reset()
	stderr.Reset()
	args2 := []string{"--agents", fmt.Sprint(n), "--state", state, "--thinfleet", filepath.Join(binDir, "thinfleet"),
		"--scenarios", "", "--timeout", "3m"}
	if err := run(ctx, args2, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("second run: %v\nprogress:\n%s", err, tail(stderr.String(), 6000))
	}
	r2 := decode(t, stdout.Bytes())
	if r2.Enroll.Fresh != 0 || r2.Enroll.Have != n || r2.Connect.Alive != n {
		t.Errorf("second run: enrolled now %d, with credentials %d, alive %d; want 0, %d, %d",
			r2.Enroll.Fresh, r2.Enroll.Have, r2.Connect.Alive, n, n)
	}
	res := filepath.Join(t.TempDir(), "500.json")
	if err := os.WriteFile(res, stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := run(ctx, []string{"table", res}, nil, &table, &stderr); err != nil {
		t.Fatalf("table: %v", err)
	}
	if !strings.Contains(table.String(), "\n| 500 | ") {
		t.Errorf("table has no row of 500 agents:\n%s", table.String())
	}
}

// TestFleet2000 is the guard of the server at scale: 2,000 agents, each
// with its own connection, all shown alive for as long as they
// heartbeat (hold samples the API over more than one interval), and each
// receives the offer of a new release. The simulator runs as its own
// process, built without the race detector: 2,000 connections take more
// goroutines than the race detector allows in one process (8,128).
func TestFleet2000(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 agents: not in -short")
	}
	const n = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "thinfleet-sim"),
		"--agents", fmt.Sprint(n), "--state", t.TempDir(), "--thinfleet", filepath.Join(binDir, "thinfleet"),
		"--scenarios", "hold,fanout", "--hold", "12s", "--timeout", "5m")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%d agents in %s", n, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("thinfleet-sim: %v\nprogress:\n%s\nfigures:\n%s", err, tail(stderr.String(), 6000), stdout.String())
	}
	r := decode(t, stdout.Bytes())
	checks := []struct {
		what      string
		got, want int
	}{
		{"agents with credentials", r.Enroll.Have, n},
		{"agents alive in the API after connecting", r.Connect.Alive, n},
		{"fewest agents alive in the API while all heartbeat", r.Hold.AliveMin, n},
		{"agents offered the new release", r.Fanout.Offered, n},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.what, c.got, c.want)
		}
	}
	if r.Hold.Samples < 2 {
		t.Errorf("hold sampled the API %d times, want at least 2", r.Hold.Samples)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestSimLabels: --labels gives every agent its labels, --canary-every N
// puts every Nth in ring=canary and the rest in ring=main, and bad
// labels stop the simulator before it starts anything.
func TestSimLabels(t *testing.T) {
	o := options{labels: "site=berlin", canaryEvery: 10}
	b := o.behaviour()
	canaries := 0
	for i := range 100 {
		l := b.LabelsOf(i)
		if l["site"] != "berlin" || (l["ring"] != "canary" && l["ring"] != "main") {
			t.Fatalf("agent %d labels %v", i, l)
		}
		if l["ring"] == "canary" {
			canaries++
		}
	}
	if canaries != 10 {
		t.Errorf("%d canaries of 100 with --canary-every 10, want 10", canaries)
	}
	if l := (&options{}).behaviour().LabelsOf(3); l != nil {
		t.Errorf("labels with no flag: %v, want none", l)
	}
	for _, args := range [][]string{{"--labels", "site=ber lin"}, {"--canary-every", "-1"},
		{"--platforms", "linux"}, {"--fail", "2.0:130"}, {"--fail", "2.0:30:twice"}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append(args, "--state", t.TempDir()), func(string) string { return "" }, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "-")) {
			t.Errorf("run %v = %v, want an error naming %s", args, err, args[0])
		}
	}
}
