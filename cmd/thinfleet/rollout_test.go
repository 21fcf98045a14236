package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
)

// cli runs "thinfleet args..." against the test server s, with its admin
// token from s's data folder, and returns what it printed.
func (s *testServer) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{args[0], "--api", s.api, "--data", s.data}, args[1:]...)
	err := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr)
	return stdout.String(), err
}

// mustCLI is cli that fails the test on an error.
func (s *testServer) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.cli(t, args...)
	if err != nil {
		t.Fatalf("thinfleet %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestRolloutVerbFlags checks the flags each rollout verb takes: scripts
// pass them. Flags may come before, between or after the words; a verb
// refuses another's flags; -h lists every verb with what it does.
func TestRolloutVerbFlags(t *testing.T) {
	want := map[string]string{
		"create":   "errors group max-concurrent selector success version waves",
		"list":     "json",
		"status":   "interval json once",
		"pause":    "reason",
		"resume":   "reason",
		"abort":    "reason",
		"rollback": "reason",
		"release":  "",
		"delete":   "",
	}
	fs := flag.NewFlagSet("rollout", flag.ContinueOnError)
	logFlagsOn(fs)
	rolloutFlags(fs)
	for _, v := range rolloutVerbs {
		if got := strings.Join(v.flags, " "); got != want[v.name] {
			t.Errorf("rollout %s flags:\n got %s\nwant %s", v.name, got, want[v.name])
		}
		for _, f := range v.flags {
			if fs.Lookup(f) == nil {
				t.Errorf("rollout %s takes --%s, which is not defined", v.name, f)
			} else if !strings.Contains(fs.Lookup(f).Usage, v.name) {
				t.Errorf("--%s's usage %q does not name %s, a verb that takes it", f, fs.Lookup(f).Usage, v.name)
			}
		}
		if v.words != "" && strings.Count(v.words, " ")+1 != v.nwords {
			t.Errorf("rollout %s: words %q but needs %d", v.name, v.words, v.nwords)
		}
	}
	if len(rolloutVerbs) != len(want) {
		t.Errorf("%d verbs, want %d", len(rolloutVerbs), len(want))
	}

	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"rollout", "-h"}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Errorf("rollout -h: %v", err)
	}
	for _, v := range rolloutVerbs {
		if !strings.Contains(stderr.String(), "\n  "+v.usage()+"\n      "+v.help+"\n") {
			t.Errorf("rollout -h does not show %s and its help:\n%s", v.name, stderr.String())
		}
	}

	noServer := func(k string) string { return map[string]string{"THINFLEET_ADMIN_TOKEN": "t"}[k] }
	for _, tt := range []struct{ args, wantErr string }{
		{"rollout", "usage:\n  thinfleet rollout create ID --version V\n  thinfleet rollout list\n"},
		{"rollout launch r1", `thinfleet rollout: no verb "launch"; one of:`},
		{"rollout status", "usage: thinfleet rollout status ID"},
		{"rollout status r1 r2", "usage: thinfleet rollout status ID"},
		{"rollout release r1", "usage: thinfleet rollout release ID VERSION"},
		{"rollout status r1 --bogus", "flag provided but not defined: -bogus"},
		{"rollout status r1 --reason x --version 1", "thinfleet rollout status takes no --reason, --version (thinfleet rollout -h)"},
		{"rollout --once pause r1", "thinfleet rollout pause takes no --once"},
		// Flags before, between and after the words reach the verb: here,
		// the server they name is not there.
		{"rollout --api 127.0.0.1:1 status r1 --once", "http://127.0.0.1:1: connection refused; is it running? (--api)"},
		{"rollout pause --api 127.0.0.1:1 r1 --reason why", "http://127.0.0.1:1: connection refused; is it running? (--api)"},
		{"rollout create r1 --version 1.0 --api 127.0.0.1:1", "http://127.0.0.1:1: connection refused; is it running? (--api)"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), strings.Fields(tt.args), noServer, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: err %v, want it to say %q", tt.args, err, tt.wantErr)
		}
	}
}

// TestRolloutCommands drives a rollout through the CLI against a running
// server: create, list, a status snapshot (the output is no terminal),
// pause, resume, a new release, abort, roll back and delete, with the
// server's refusals and unknown names said clearly, and finds each
// action in the audit log, newest first.
func TestRolloutCommands(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "data"), nil)

	if out := s.mustCLI(t, "rollout", "list"); !strings.HasPrefix(out, "no rollouts") {
		t.Errorf("list with none: %q", out)
	}
	out := s.mustCLI(t, "rollout", "create", "r1", "--version", "1.2.0", "--selector", "ring=canary",
		"--waves", "canary:10,50,100", "--errors", "30", "--max-concurrent", "2")
	if want := "rollout r1 created: 1.2.0 to ring=canary, in canary 10%, wave 2 50%, wave 3 100%\n"; !strings.HasPrefix(out, want) {
		t.Errorf("create: %q, want it to start %q", out, want)
	}
	if _, err := s.cli(t, "rollout", "create", "r1", "--version", "1.2.0"); err == nil || strings.Contains(err.Error(), "no rollout named") {
		t.Errorf("create r1 again: %v, want the server's refusal", err)
	}
	if _, err := s.cli(t, "rollout", "create", "Bad Name", "--version", "1.2.0"); err == nil || !strings.Contains(err.Error(), "Bad Name") {
		t.Errorf("create with a bad id: %v, want the server's reason naming it", err)
	}

	out = s.mustCLI(t, "rollout", "list")
	if !regexp.MustCompile(`(?m)^ID +STATE +VERSION.*\nr1 +running +1\.2\.0 +ring=canary +1/3 canary +0/0 +0 `).MatchString(out) {
		t.Errorf("list:\n%s", out)
	}

	// Flags after the words, the server named after the verb: as people type.
	out = s.mustCLI(t, "rollout", "status", "r1")
	for _, want := range []string{
		"Rollout r1: 1.2.0 to ring=canary\n", "State:   running\n", "Limit:   at most 2 installs at once\n",
		"\nWAVE    SIZE  DEVICES  SUCCEEDED  FAILED  IN PROGRESS  WAITING  STATE     PROGRESS\n",
		"\ncanary  10%   0        0          0       0            0        open      [                        ]   0%\n",
		"\nEach wave goes on at 90% succeeded, pauses the rollout at 30% failed.\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") || strings.Contains(out, "Ctrl-C") {
		t.Errorf("status to a file draws for a terminal:\n%q", out)
	}
	out = s.mustCLI(t, "rollout", "status", "r1", "--json")
	var r rolloutView
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.ID != "r1" || len(r.Waves) != 3 || r.MaxConcurrent != 2 {
		t.Errorf("status --json: %v\n%s", err, out)
	}

	steps := []struct {
		args    []string
		want    string // stdout
		wantErr string // or the error
	}{
		{[]string{"rollout", "pause", "r1", "--reason", "checking the canary"}, "rollout r1: paused, 1.2.0 to ring=canary (checking the canary)\n", ""},
		{[]string{"rollout", "pause", "r1"}, "", "it is paused"},
		{[]string{"rollout", "status", "nope"}, "", "no rollout named nope"},
		{[]string{"rollout", "pause", "nope"}, "", "no rollout named nope"},
		{[]string{"rollout", "release", "r1", "1.2.1"}, "rollout r1: paused, 1.2.1 to ring=canary", ""},
		{[]string{"rollout", "release", "r1", "not a version"}, "", "not a version"},
		{[]string{"rollout", "resume", "r1"}, "rollout r1: running, 1.2.1 to ring=canary\n", ""},
		{[]string{"rollout", "resume", "r1"}, "", "it is running"},
		{[]string{"rollout", "delete", "r1"}, "", "running"},
		{[]string{"rollout", "abort", "r1", "--reason", "wrong build"}, "rollout r1: aborted, 1.2.1 to ring=canary (wrong build)\n", ""},
		{[]string{"rollout", "resume", "r1"}, "", "it is aborted"},
		{[]string{"rollout", "rollback", "r1"}, "rollout r1: rolled back, 1.2.1 to ring=canary", ""},
		{[]string{"rollout", "delete", "r1"}, "rollout r1: deleted\n", ""},
		{[]string{"rollout", "status", "r1"}, "", "no rollout named r1"},
	}
	for _, st := range steps {
		out, err := s.cli(t, st.args...)
		switch {
		case st.wantErr == "" && err != nil:
			t.Errorf("%s: %v", strings.Join(st.args, " "), err)
		case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
			t.Errorf("%s: err %v, want one saying %q", strings.Join(st.args, " "), err, st.wantErr)
		case !strings.HasPrefix(out, st.want):
			t.Errorf("%s: %q, want it to start %q", strings.Join(st.args, " "), out, st.want)
		}
	}

	out = s.mustCLI(t, "audit", "--action", "rollout.")
	var actions []string
	for _, l := range strings.Split(out, "\n")[1:] {
		if f := strings.Fields(l); len(f) > 4 {
			actions = append(actions, f[3]+" "+f[4])
		}
	}
	want := "rollout.delete r1,rollout.rollback r1,rollout.abort r1,rollout.resume r1,rollout.release r1,rollout.pause r1,rollout.create r1"
	if strings.Join(actions, ",") != want {
		t.Errorf("audit --action rollout.:\n%s\nwant the actions %s", out, want)
	}
	if !strings.Contains(out, "admin (api) from 127.0.0.1") || !strings.Contains(out, "checking the canary") {
		t.Errorf("audit does not say who, or the reason given:\n%s", out)
	}
}

// TestRolloutStatusWatch follows a running rollout as a terminal shows
// it: drawn, then redrawn in place over the lines before, until the
// rollout pauses; and until Ctrl-C (the context's end), which stops the
// watch without an error. Either way the terminal is left wrapping
// lines and showing its cursor.
func TestRolloutStatusWatch(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "data"), nil)
	s.mustCLI(t, "rollout", "create", "r1", "--version", "1.2.0")
	c, err := apiFlags{api: &s.api, data: &s.data}.client(env{getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}

	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- watchRollout(context.Background(), c, "r1", out, 100*time.Millisecond, statusStyle{loc: time.UTC, color: true})
	}()
	redraw := regexp.MustCompile(`\x1b\[(\d+)A\x1b\[J`)
	waitFor(t, "the status redrawn twice", func() (bool, string) {
		return len(redraw.FindAllString(out.String(), -1)) >= 2, out.String()
	})
	s.mustCLI(t, "rollout", "pause", "r1", "--reason", "enough")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch goes on after the rollout paused")
	}
	got := out.String()
	if !strings.HasPrefix(got, noWrap+hideCursor) || !strings.HasSuffix(got, wrap+showCursor) {
		t.Errorf("the watch does not set the terminal up and back: %q … %q", got[:min(len(got), 20)], got[max(0, len(got)-20):])
	}
	// Each redraw goes back over exactly the lines drawn before it.
	draws := redraw.Split(strings.TrimSuffix(strings.TrimPrefix(got, noWrap+hideCursor), wrap+showCursor), -1)
	for i, m := range redraw.FindAllStringSubmatch(got, -1) {
		if lines := strings.Count(draws[i], "\n"); fmt.Sprint(lines) != m[1] {
			t.Errorf("redraw %d goes up %s lines over a drawing of %d", i+1, m[1], lines)
		}
	}
	last := draws[len(draws)-1]
	if !strings.Contains(last, "State:   paused: enough\n") || strings.Contains(last, "Ctrl-C") {
		t.Errorf("the last drawing:\n%s\nwant the pause and its reason, and no Ctrl-C hint", last)
	}
	if !strings.Contains(draws[0], "Ctrl-C stops watching") {
		t.Errorf("a running rollout's drawing has no Ctrl-C hint:\n%s", draws[0])
	}

	s.mustCLI(t, "rollout", "resume", "r1")
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	go func() { done <- watchRollout(ctx, c, "r1", out, 100*time.Millisecond, statusStyle{loc: time.UTC}) }()
	waitFor(t, "the status drawn", func() (bool, string) { return strings.Contains(out.String(), "State:   running"), out.String() })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("watch after Ctrl-C: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch goes on after Ctrl-C")
	}
	if !strings.HasSuffix(out.String(), wrap+showCursor) {
		t.Errorf("after Ctrl-C the terminal is not set back: %q", out.String())
	}
	if _, err := getRollout(context.Background(), c, "nope"); err == nil || err.Error() != "no rollout named nope" {
		t.Errorf("watching an unknown rollout: %v", err)
	}
}

// TestAuditCommand prints the audit log of a running server: none at
// first, then its entries newest first, a page at a time with the
// command for the older ones, filtered, and device-sent control
// characters shown harmless.
func TestAuditCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := startServer(t, data, nil)
	if out := s.mustCLI(t, "audit"); out != "no actions recorded\n" {
		t.Errorf("empty log: %q", out)
	}
	st := s.openStore(t)
	for i := 1; i <= 60; i++ {
		e := fleet.AuditEntry{Who: "admin (api) from 127.0.0.1", Action: "device.tag", Target: fmt.Sprint("kiosk-", i), Detail: fmt.Sprint("entry ", i)}
		if i%20 == 0 {
			e.Action, e.Target, e.Detail = "rollout.pause", "r1", fmt.Sprint("entry ", i, " \x1b[31mred")
		}
		if err := st.AppendAudit(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	out := s.mustCLI(t, "audit")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 52 || !regexp.MustCompile(`^SEQ +TIME +ACTION +TARGET +WHO +DETAIL$`).MatchString(lines[0]) {
		t.Fatalf("audit: %d lines, want a header, 50 entries and the older command:\n%s", len(lines), out)
	}
	if !regexp.MustCompile(`^\d+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +rollout\.pause +r1 +admin \(api\) from 127\.0\.0\.1 +entry 60 \?\[31mred$`).MatchString(lines[1]) {
		t.Errorf("newest line: %q", lines[1])
	}
	m := regexp.MustCompile(`^older: thinfleet audit --before (\d+)$`).FindStringSubmatch(lines[51])
	if m == nil {
		t.Fatalf("last line: %q, want the command for older entries", lines[51])
	}
	out = s.mustCLI(t, "audit", "--before", m[1])
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != 11 || !strings.HasSuffix(lines[10], "entry 1") {
		t.Errorf("older page:\n%s\nwant 10 entries down to entry 1 and no more", out)
	}
	out = s.mustCLI(t, "audit", "--action", "rollout.", "--limit", "2")
	if !strings.Contains(out, "entry 60") || !strings.Contains(out, "entry 40") || !strings.Contains(out, `older: thinfleet audit --action "rollout." --before `) {
		t.Errorf("audit --action rollout. --limit 2:\n%s", out)
	}
	if out := s.mustCLI(t, "audit", "--target", "nobody"); out != "no action matches\n" {
		t.Errorf("no match: %q", out)
	}
	out = s.mustCLI(t, "audit", "--json", "--limit", "1")
	var log struct {
		Entries []fleet.AuditEntry
		Next    uint64
	}
	if err := json.Unmarshal([]byte(out), &log); err != nil || len(log.Entries) != 1 || log.Next == 0 {
		t.Errorf("audit --json: %v\n%s", err, out)
	}
	for _, bad := range []string{"0", "1001"} {
		if _, err := s.cli(t, "audit", "--limit", bad); err == nil || !strings.Contains(err.Error(), "want 1 to 1000") {
			t.Errorf("audit --limit %s: %v", bad, err)
		}
	}
}

var natsLine = regexp.MustCompile(`agents connect to: (\S+)`)

// openStore opens the fleet state of the test server s, as a service of
// its own does: over NATS with the service token.
func (s *testServer) openStore(t *testing.T) *store.Store {
	t.Helper()
	m := natsLine.FindStringSubmatch(s.out.String())
	if m == nil {
		t.Fatalf("no NATS address in the banner:\n%s", s.out)
	}
	d, err := networkDialer(&clientFlags{url: m[1], serviceToken: readToken(t, filepath.Join(s.data, "service.token")), replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // before the server stops: the connection drains
	_, st, err := openStore(ctx, d, "test")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRolloutNoServer: with no server at --api, the rollout and audit
// commands say so, with the address they tried.
func TestRolloutNoServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	getenv := func(k string) string { return map[string]string{"THINFLEET_ADMIN_TOKEN": "t"}[k] }
	for _, args := range [][]string{
		{"rollout", "status", "r1", "--api", closed},
		{"rollout", "--api", closed, "list"},
		{"rollout", "create", "r1", "--version", "1.0", "--api", closed},
		{"audit", "--api", closed},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, getenv, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "http://"+closed+": connection refused; is it running? (--api)") {
			t.Errorf("%s: %v, want it to say nothing answers at %s", strings.Join(args, " "), err, closed)
		}
	}
}
