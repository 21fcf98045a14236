package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/thinfleet/thinfleet/agent"
	"github.com/thinfleet/thinfleet/fleet"
)

var agentLine = regexp.MustCompile(`thinfleet-agent --server (\S+) --enroll-token (\S+)`)

// startAgents runs an in-process agent for each id, with its labels,
// against the server s; they stop with the test.
func startAgents(t *testing.T, s *testServer, labels map[string]map[string]string) {
	t.Helper()
	m := agentLine.FindStringSubmatch(s.out.String())
	if m == nil {
		t.Fatalf("no agent line in the banner:\n%s", s.out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(labels))
	for id, l := range labels {
		a, err := agent.New(agent.Options{
			Server: m[1], EnrollToken: m[2], StateDir: t.TempDir(), ID: id, Labels: l,
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- a.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range labels {
			<-done
		}
	})
}

// cli runs "thinfleet args..." against the server at api, with the data
// folder that holds its admin token, and returns what it printed.
func cli(t *testing.T, api, data string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{args[0], "--api", api, "--data", data}, args[1:]...)
	err := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr)
	return stdout.String(), err
}

// TestLabelsPinsGroupsCLI drives tags, pins and groups from the command
// line against a server in the test, with real agents that report their
// labels: what each command prints, and what the API shows after it.
func TestLabelsPinsGroupsCLI(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := startServer(t, data, nil)
	token := readToken(t, filepath.Join(data, "admin.token"))
	hostPort := strings.TrimPrefix(s.api, "http://")
	publish(t, filepath.Join(data, "updates"), "1.0.0")
	startAgents(t, s, map[string]map[string]string{
		"kiosk-1": {"site": "berlin", "ring": "canary"},
		"kiosk-2": {"site": "berlin"},
		"kiosk-3": {"site": "paris"},
	})
	devices := func() map[string]fleet.Device {
		_, body := get(t, s.api, "/api/v1/devices", token)
		var ds []fleet.Device
		if err := json.Unmarshal([]byte(body), &ds); err != nil {
			t.Fatalf("devices: %v in %s", err, body)
		}
		out := map[string]fleet.Device{}
		for _, d := range ds {
			out[d.ID] = d
		}
		return out
	}
	waitFor(t, "three agents with their labels", func() (bool, string) {
		ds := devices()
		return len(ds) == 3 && ds["kiosk-1"].Labels["ring"] == "canary" && ds["kiosk-2"].Labels["site"] == "berlin" && ds["kiosk-3"].Labels["site"] == "paris", ""
	})
	waitFor(t, "release 1.0.0 in the catalog", func() (bool, string) {
		_, body := get(t, s.api, "/api/v1/updates", token)
		return strings.Contains(body, `"version": "1.0.0"`), body
	})

	steps := []struct {
		args    []string
		want    string // the whole output, or with wantErr what the error says
		wantErr bool
	}{
		{[]string{"devices", "tag", "kiosk-1", "kiosk-2", "owner=ops", "tier=a,zone=b"}, "kiosk-1: tagged owner=ops,tier=a,zone=b\nkiosk-2: tagged owner=ops,tier=a,zone=b\n", false},
		{[]string{"devices", "tag", "nobody", "kiosk-1", "owner=ops"}, "tag: failed on 1 of 2 devices", true},
		{[]string{"devices", "tag", "kiosk-1", "a=1", "a=2"}, "label a given twice", true},
		{[]string{"devices", "tag", "kiosk-1"}, "usage: thinfleet devices", true},
		{[]string{"devices", "tag", "--selector", "site=berlin", "--remove", "tier", "--remove", "zone"}, "kiosk-1: removed tier,zone\nkiosk-2: removed tier,zone\n", false},
		{[]string{"pin", "kiosk-3", "1.0.0", "--reason", "the printer"}, "kiosk-3: pinned to 1.0.0 (the printer)\n", false},
		{[]string{"pin", "kiosk-3", "9.9"}, `version "9.9" is not in the catalog; it has 1.0.0`, true},
		{[]string{"pin", "nobody", "1.0.0"}, "no device with that id", true},
		{[]string{"groups", "set", "berlin", "--channel", "beta"}, "group berlin is new: give its devices with --selector k=v", true},
		{[]string{"groups", "set", "berlin", "--selector", "site=berlin", "--channel", "beta", "--window", "mon,tue 02:00-04:00 Europe/Berlin"},
			"group berlin: site=berlin, 2 devices, channel beta, window mon,tue 02:00-04:00 Europe/Berlin\n", false},
		{[]string{"groups", "set", "berlin", "--window", "someday 02:00-04:00"}, `--window: window day "someday"`, true},
		{[]string{"pin", "--group", "berlin", "1.0.0", "--reason", "freeze"}, "group berlin: pinned to 1.0.0 (freeze) (2 devices)\n", false},
		{[]string{"groups", "set", "berlin", "--channel", "stable"},
			"group berlin: site=berlin, 2 devices, channel stable, pinned to 1.0.0 (freeze), window mon,tue 02:00-04:00 Europe/Berlin\n", false},
		{[]string{"pin", "--group", "nothing", "1.0.0"}, `no group called "nothing"`, true},
	}
	for _, st := range steps {
		out, err := cli(t, hostPort, data, st.args...)
		switch {
		case st.wantErr && (err == nil || !strings.Contains(err.Error(), st.want)):
			t.Errorf("thinfleet %s: %v (printed %q), want an error with %q", strings.Join(st.args, " "), err, out, st.want)
		case !st.wantErr && (err != nil || out != st.want):
			t.Errorf("thinfleet %s: %v, printed\n%s\nwant\n%s", strings.Join(st.args, " "), err, out, st.want)
		}
	}

	ds := devices()
	if want := (fleet.Labels{"owner": "ops"}); !maps.Equal(ds["kiosk-1"].Tags, want) || !maps.Equal(ds["kiosk-2"].Tags, want) {
		t.Errorf("tags: kiosk-1 %v, kiosk-2 %v; want %v", ds["kiosk-1"].Tags, ds["kiosk-2"].Tags, want)
	}
	if p := ds["kiosk-3"].Pin; p == nil || p.Version != "1.0.0" || p.Reason != "the printer" {
		t.Errorf("kiosk-3 pin: %+v", p)
	}

	// The device list shows each device's labels with its tags (marked
	// *) and its pin. The version column is whatever the device runs
	// now: kiosk-3's pin holds it on 1.0.0.
	out, err := cli(t, s.api, data, "devices")
	if err != nil || !regexp.MustCompile(`(?m)^kiosk-1 +approved +alive +\S+ +ring=canary,site=berlin,owner=ops\* +`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^kiosk-3 +approved +alive +\S+ +site=paris +1\.0\.0 `).MatchString(out) {
		t.Errorf("devices list: %v\n%s", err, out)
	}
	out, err = cli(t, s.api, data, "groups")
	if err != nil || !regexp.MustCompile(`(?m)^berlin +site=berlin +2 +stable +1\.0\.0 \(freeze\) +mon,tue 02:00-04:00 Europe/Berlin$`).MatchString(out) {
		t.Errorf("groups list: %v\n%s", err, out)
	}
	out, err = cli(t, s.api, data, "pin")
	if err != nil || !regexp.MustCompile(`(?m)^group berlin \(2 devices\) +1\.0\.0 +freeze +admin \(api\)`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^kiosk-3 +1\.0\.0 +the printer +admin \(api\)`).MatchString(out) {
		t.Errorf("pin list: %v\n%s", err, out)
	}

	for _, st := range []struct {
		args []string
		want string
	}{
		{[]string{"pin", "--remove", "kiosk-3"}, "kiosk-3: not pinned\n"},
		{[]string{"pin", "--group", "berlin", "--remove"}, "group berlin: not pinned (2 devices)\n"},
		{[]string{"groups", "delete", "berlin"}, "group berlin: deleted\n"},
	} {
		if out, err := cli(t, s.api, data, st.args...); err != nil || out != st.want {
			t.Errorf("thinfleet %s: %v, printed %q, want %q", strings.Join(st.args, " "), err, out, st.want)
		}
	}
	if _, err := cli(t, s.api, data, "groups", "delete", "berlin"); err == nil || !strings.Contains(err.Error(), `no group called "berlin"`) {
		t.Errorf("deleting a deleted group: %v", err)
	}
	ds = devices()
	if ds["kiosk-3"].Pin != nil {
		t.Errorf("kiosk-3 still pinned: %+v", ds["kiosk-3"].Pin)
	}

	out, err = cli(t, s.api, data, "devices", "delete", "kiosk-3", "nobody")
	if want := "kiosk-3: deleted\nnobody: no device with that id\n"; out != want || err == nil || err.Error() != "delete: failed on 1 of 2 devices" {
		t.Errorf("devices delete: %v, printed %q, want %q and a failure on 1 of 2", err, out, want)
	}
	var ae *apiError
	if _, err := cli(t, s.api, data, "pin", "kiosk-3", "1.0.0"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("pinning a deleted device: %v, want the server's 404", err)
	}
}
