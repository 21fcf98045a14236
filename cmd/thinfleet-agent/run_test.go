package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/broker/brokertest"
	"github.com/thinfleet/thinfleet/wire"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestVersionAndHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--version"}, []string{"thinfleet-agent dev\n"}},
		{[]string{"--help"}, []string{"Usage:", "-server URL", "-enroll-token", "THINFLEET_ENROLL_TOKEN", "THINFLEET_PACKAGE_DIR"}},
		{[]string{"-h"}, []string{"Usage:"}},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		// THINFLEET_VERSION is set for install commands; it must not
		// count as --version, nor break the parse.
		err := run(context.Background(), tt.args, env(map[string]string{"THINFLEET_VERSION": "1.2"}), &stdout, &stderr)
		if err != nil {
			t.Errorf("run(%v) = %v", tt.args, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("run(%v) stdout lacks %q:\n%s", tt.args, w, stdout.String())
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, nil, "-bogus"},
		{"stray argument", []string{"start"}, nil, `"start"`},
		{"bad env", nil, map[string]string{"THINFLEET_HEARTBEAT": "often"}, "THINFLEET_HEARTBEAT"},
		{"heartbeat too short", []string{"--heartbeat", "1ms"}, nil, "heartbeat"},
		{"log format", []string{"--log-format", "xml"}, nil, "--log-format"},
		{"invalid id", []string{"--id", "a.b"}, nil, "id"},
		{"invalid label", []string{"--label", "site=Ber lin"}, nil, `label site value "Ber lin"`},
		{"label key twice", []string{"--label", "ring=a", "--label", "ring=b"}, nil, "label ring given twice"},
		{"invalid label in env", nil, map[string]string{"THINFLEET_LABELS": "site=berlin,-x=1"}, `THINFLEET_LABELS: label key "-x"`},
		{"too many labels", []string{"--label", manyLabels(33)}, nil, "labels: 33, at most 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--state", t.TempDir()}, tt.args...)
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, env(tt.env), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%v) = %v, want an error naming %q", args, err, tt.want)
			}
		})
	}
}

func TestDefaultStateDir(t *testing.T) {
	tests := []struct {
		euid int
		env  map[string]string
		want string
	}{
		{0, map[string]string{"HOME": "/root"}, "/var/lib/thinfleet-agent"},
		{1000, map[string]string{"HOME": "/home/kim", "XDG_STATE_HOME": "/xdg"}, "/xdg/thinfleet-agent"},
		{1000, map[string]string{"HOME": "/home/kim"}, "/home/kim/.local/state/thinfleet-agent"},
	}
	for _, tt := range tests {
		if got := defaultStateDir(tt.euid, env(tt.env)); got != tt.want {
			t.Errorf("defaultStateDir(%d, %v) = %q, want %q", tt.euid, tt.env, got, tt.want)
		}
	}
}

// TestRunsAgent runs the agent as the binary does and checks, by the
// subject its heartbeats arrive on, which settings it took: flags, the
// environment, and a flag over the environment.
func TestRunsAgent(t *testing.T) {
	srv := brokertest.Start(t, brokertest.Options{EnrollToken: "tok"})
	nc := srv.Conn

	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		wantID string
	}{
		{"flags", []string{"--server", srv.URL, "--enroll-token", "tok", "--id", "from-flag", "--heartbeat", "100ms"}, nil, "from-flag"},
		{"environment", nil, map[string]string{
			"THINFLEET_SERVER": srv.URL, "THINFLEET_ENROLL_TOKEN": "tok", "THINFLEET_ID": "from-env", "THINFLEET_HEARTBEAT": "100ms",
		}, "from-env"},
		{"flag over environment", []string{"--id", "from-flag-2"}, map[string]string{
			"THINFLEET_SERVER": srv.URL, "THINFLEET_ENROLL_TOKEN": "tok", "THINFLEET_ID": "from-env-2", "THINFLEET_HEARTBEAT": "100ms",
		}, "from-flag-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			beats := make(chan wire.Heartbeat, 10)
			sub, err := nc.Subscribe(wire.AllHeartbeats, func(m *nats.Msg) {
				var hb wire.Heartbeat
				if _, id, _ := wire.ParseSubject(m.Subject); id == tt.wantID && json.Unmarshal(m.Data, &hb) == nil {
					beats <- hb
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			args := append([]string{"--state", t.TempDir(), "--log-level", "debug"}, tt.args...)
			ctx, cancel := context.WithCancel(context.Background())
			var stdout, stderr bytes.Buffer
			done := make(chan error, 1)
			go func() { done <- run(ctx, args, env(tt.env), &stdout, &stderr) }()

			select {
			case hb := <-beats:
				if hb.IntervalMS != 100 {
					t.Errorf("heartbeat interval %dms, want 100", hb.IntervalMS)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("no heartbeat from %s", tt.wantID)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run returned %v after its context ended, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("run did not return after its context ended")
			}
			if t.Failed() {
				t.Logf("stderr:\n%s", stderr.String())
			}
		})
	}
}

// manyLabels is n labels, k0=v,k1=v,...
func manyLabels(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf("k%d=v", i))
	}
	return strings.Join(parts, ",")
}

// TestAgentLabels runs the agent with labels from flags, from
// THINFLEET_LABELS, and from both (the flags win), and reads them in its
// hardware report.
func TestAgentLabels(t *testing.T) {
	srv := brokertest.Start(t, brokertest.Options{EnrollToken: "tok"})
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want map[string]string
	}{
		{"flags", []string{"--label", "site=berlin", "--label", "ring=canary"}, nil,
			map[string]string{"site": "berlin", "ring": "canary"}},
		{"a list in one flag", []string{"--label", "site=berlin,ring=canary", "--label", "gpu"}, nil,
			map[string]string{"site": "berlin", "ring": "canary", "gpu": ""}},
		{"environment", nil, map[string]string{"THINFLEET_LABELS": "site=berlin, ring=canary"},
			map[string]string{"site": "berlin", "ring": "canary"}},
		{"flags over environment", []string{"--label", "site=paris"}, map[string]string{"THINFLEET_LABELS": "site=berlin,ring=canary"},
			map[string]string{"site": "paris"}},
		{"the flag's own variable", nil, map[string]string{"THINFLEET_LABEL": "site=berlin,ring=canary"},
			map[string]string{"site": "berlin", "ring": "canary"}},
		{"the flag's own variable over the plural", nil, map[string]string{"THINFLEET_LABEL": "site=rome", "THINFLEET_LABELS": "site=berlin"},
			map[string]string{"site": "rome"}},
		{"none", nil, nil, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("labelled-%d", i)
			reports := make(chan wire.HWReport, 10)
			sub, err := srv.Conn.Subscribe(wire.HWReportSubject(id), func(m *nats.Msg) {
				if r, err := wire.Decode[wire.HWReport](m.Data); err == nil {
					reports <- r
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			e := map[string]string{"THINFLEET_SERVER": srv.URL, "THINFLEET_ENROLL_TOKEN": "tok"}
			maps.Copy(e, tt.env)
			args := append([]string{"--state", t.TempDir(), "--id", id}, tt.args...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stdout, stderr bytes.Buffer
			done := make(chan error, 1)
			go func() { done <- run(ctx, args, env(e), &stdout, &stderr) }()
			select {
			case r := <-reports:
				if !maps.Equal(r.Labels, tt.want) {
					t.Errorf("labels in the hardware report = %v, want %v", r.Labels, tt.want)
				}
			case err := <-done:
				t.Fatalf("run returned %v before reporting; stderr:\n%s", err, stderr.String())
			case <-time.After(10 * time.Second):
				t.Fatalf("no hardware report from %s; stderr:\n%s", id, stderr.String())
			}
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("run did not return after its context ended")
			}
		})
	}
}
