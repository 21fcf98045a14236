package main

// The fleet tests (fleet_*_test.go) watch rollouts, retries, windows and
// the policy file end to end: "thinfleet server" runs in the test's
// process (run, as main runs it, with the services' clock and retry
// pauses set through tuning), with its real embedded broker, catalog,
// decision and rollout services and web API; a fleet of simulated agents
// (internal/simfleet, the simulator's own) enrolls, reports and installs
// over real connections and real HTTP downloads, and records every offer
// each agent receives. Every operator action goes through the HTTP API,
// and each test ends by finding each of its actions in the audit log.
//
// They assert what an operator would see and what each device was
// offered, never how fast: every wait polls with a deadline long enough
// for a loaded CI machine running with -race.

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
	"github.com/thinfleet/thinfleet/internal/simfleet"
	"github.com/thinfleet/thinfleet/wire"
)

// fleetWait bounds every wait of the fleet tests: generous, for a
// loaded 2-core machine under -race; a passing run takes far less.
const fleetWait = 90 * time.Second

// rig is a server in the test's process and a simulated fleet on it.
type rig struct {
	t       *testing.T
	data    string
	updates string
	args    []string // the server's command line, the same at a restart
	tune    tuning
	clock   *testClock
	srv     *testServer
	api     string
	token   string
	fleet   *simfleet.Fleet
	http    *http.Client

	// acts are the operator's actions the test made through the API, each
	// to be found in the audit log when the test ends.
	acts []auditWant
}

// auditWant is an action the audit log must hold.
type auditWant struct{ action, target string }

// rigOptions choose the fleet.
type rigOptions struct {
	agents    int
	behaviour simfleet.Behaviour
}

// testClock is the services' clock: real time, shifted by an offset the
// test sets.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time  { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Set(t time.Time) { c.offset.Store(int64(time.Until(t))) }

// newRig starts a server on fresh folders and fixed free ports (a
// restart listens where the agents reconnect), enrolls and connects the
// fleet, and waits until the API shows every agent alive. Installing is
// on: each agent installs what it is offered, by the agent's rules.
func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	root := t.TempDir()
	r := &rig{t: t, data: filepath.Join(root, "data"), updates: filepath.Join(root, "updates"), clock: &testClock{},
		http: &http.Client{Timeout: 30 * time.Second}}
	r.tune = tuning{now: r.clock.Now, windowCheck: 50 * time.Millisecond, rolloutInterval: 50 * time.Millisecond}
	r.args = []string{"server", "--data", r.data, "--updates", r.updates,
		"--nats", freeAddr(t), "--http", freeAddr(t),
		// Short retries, so that a test sees them happen.
		"--retry-first", "200ms", "--retry-max", "1s", "--retry-tries", "5",
		"--enroll-rate", "1000000", "--enroll-burst", "1000000", "--http-conns-per-addr", "0",
		"--log-level", "info"}
	// The server stops last, after the fleet and the audit check, and
	// after a restart it is the one running then.
	t.Cleanup(func() {
		if err := r.srv.stop(t); err != nil {
			t.Errorf("server: %v", err)
		}
		if t.Failed() {
			t.Logf("server output (last 30000 bytes):\n%s", tail(r.srv.out.String(), 30000))
		}
	})
	r.start()
	r.token = readToken(t, filepath.Join(r.data, "admin.token"))
	m := agentLine.FindStringSubmatch(r.srv.out.String())
	if m == nil {
		t.Fatalf("no agent line in the banner:\n%s", r.srv.out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.fleet = simfleet.New(simfleet.Options{
		Agents: o.agents, Prefix: "dev", NATSURL: m[1], EnrollToken: m[2], Dir: filepath.Join(root, "agents"),
		Heartbeat: 2 * time.Second, Timeout: fleetWait, Behaviour: o.behaviour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if _, _, err := r.fleet.Enroll(ctx, nil); err != nil {
		cancel()
		t.Fatalf("enroll the fleet: %v", err)
	}
	r.fleet.Install(true)
	done := make(chan struct{})
	go func() { defer close(done); r.fleet.Run(ctx) }()
	r.fleet.Connect(ctx)
	t.Cleanup(func() {
		cancel()
		<-done
		r.fleet.Close()
	})
	t.Cleanup(r.checkAudit) // runs before the fleet and the server stop
	// A rollout chooses its members from what the server knows: every
	// device alive, with its labels, before a test starts one.
	r.waitDevices("every agent alive with its labels", func(ds map[string]apiDevice) error {
		alive := 0
		for _, a := range r.fleet.Agents() {
			d := ds[a.ID()]
			if !d.Alive {
				continue
			}
			if want := a.Labels(); len(want) > 0 && !maps.Equal(d.Labels, want) {
				return fmt.Errorf("%s has labels %v, want %v", a.ID(), d.Labels, want)
			}
			alive++
		}
		if alive != o.agents {
			return fmt.Errorf("%d of %d alive", alive, o.agents)
		}
		return nil
	})
	return r
}

// runTuned is run with the services tuned by t, for a test that needs a
// clock of its own or short retries.
func runTuned(ctx context.Context, t tuning, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWith(ctx, args, getenv, stdout, stderr, t)
}

// freeAddr is a loopback address with a port free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the server with the rig's command line and tuning, as
// startServer does; newRig's cleanup stops it.
func (r *rig) start() {
	t := r.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{data: r.data, out: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- runTuned(ctx, r.tune, r.args, func(string) string { return "" }, s.out, s.out) }()
	waitFor(t, "the banner", func() (bool, string) {
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("server ended: %v\n%s", err, s.out)
		default:
		}
		return strings.Contains(s.out.String(), "on each client:"), s.out.String()
	})
	r.srv = s
	r.api = apiLine.FindStringSubmatch(s.out.String())[1]
}

// restart stops the server and starts it again on the same folders and
// ports; the agents reconnect by themselves.
func (r *rig) restart() {
	r.t.Helper()
	if err := r.srv.stop(r.t); err != nil {
		r.t.Fatalf("stop the server: %v\n%s", err, tail(r.srv.out.String(), 30000))
	}
	r.start()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// call sends a request to the API with the admin token and returns the
// status and body.
func (r *rig) call(method, path string, body any) (int, []byte) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.api+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// get GETs path into v, failing the test unless it answers 200.
func (r *rig) get(path string, v any) {
	r.t.Helper()
	if err := r.tryGet(path, v); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) tryGet(path string, v any) error {
	code, b := r.call(http.MethodGet, path, nil)
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, code, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %v: %s", path, err, b)
	}
	return nil
}

// act is an operator's action through the API: it must answer wantCode,
// and the audit log must then hold action on target.
func (r *rig) act(method, path string, body any, wantCode int, action, target string) []byte {
	r.t.Helper()
	code, b := r.call(method, path, body)
	if code != wantCode {
		r.t.Fatalf("%s %s: %d %s, want %d", method, path, code, bytes.TrimSpace(b), wantCode)
	}
	r.acts = append(r.acts, auditWant{action, target})
	return b
}

// checkAudit finds every action the test made in the audit log
// (GET /api/v1/audit), each as often as it was made.
func (r *rig) checkAudit() {
	t := r.t
	if t.Failed() || len(r.acts) == 0 {
		return
	}
	var page struct {
		Entries []fleet.AuditEntry `json:"entries"`
	}
	if err := r.tryGet("/api/v1/audit?limit=1000", &page); err != nil {
		t.Errorf("the audit log: %v", err)
		return
	}
	left := slices.Clone(page.Entries)
	for _, want := range r.acts {
		i := slices.IndexFunc(left, func(e fleet.AuditEntry) bool { return e.Action == want.action && e.Target == want.target })
		if i < 0 {
			t.Errorf("the audit log lacks %s on %q; it holds %s", want.action, want.target, auditSummary(page.Entries))
			continue
		}
		if e := left[i]; e.Who == "" || e.Time.IsZero() {
			t.Errorf("audit entry %+v: no who or no time", e)
		}
		left = slices.Delete(left, i, i+1)
	}
}

func auditSummary(es []fleet.AuditEntry) string {
	var parts []string
	for _, e := range es {
		parts = append(parts, e.Action+" "+e.Target)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// apiDevice is the part of a device the fleet tests read.
type apiDevice struct {
	ID      string            `json:"id"`
	Alive   bool              `json:"alive"`
	Version string            `json:"version"`
	Install *fleet.Install    `json:"install"`
	Pin     *fleet.Pin        `json:"pin"`
	Labels  map[string]string `json:"labels"`
}

// devices reads the devices from the API, by id.
func (r *rig) devices() (map[string]apiDevice, error) {
	var list []apiDevice
	if err := r.tryGet("/api/v1/devices", &list); err != nil {
		return nil, err
	}
	m := make(map[string]apiDevice, len(list))
	for _, d := range list {
		m[d.ID] = d
	}
	return m, nil
}

// waitDevices waits until cond holds of the devices the API shows.
func (r *rig) waitDevices(what string, cond func(map[string]apiDevice) error) {
	r.t.Helper()
	poll.Eventually(r.t, fleetWait, what, func() error {
		ds, err := r.devices()
		if err != nil {
			return err
		}
		return cond(ds)
	})
}

// onVersion is a condition: exactly the agents of ids (every agent when
// nil) run version as the API shows, the rest do not.
func (r *rig) onVersion(version string, ids []string) func(map[string]apiDevice) error {
	return func(ds map[string]apiDevice) error {
		want := map[string]bool{}
		if ids == nil {
			for _, a := range r.fleet.Agents() {
				want[a.ID()] = true
			}
		}
		for _, id := range ids {
			want[id] = true
		}
		var missing, extra []string
		for _, a := range r.fleet.Agents() {
			on := ds[a.ID()].Version == version
			switch {
			case want[a.ID()] && !on:
				missing = append(missing, a.ID())
			case !want[a.ID()] && on:
				extra = append(extra, a.ID())
			}
		}
		if len(missing)+len(extra) > 0 {
			return fmt.Errorf("%d devices not yet on %s (first %v), %d on it that should not be (%v)",
				len(missing), version, missing[:min(len(missing), 5)], len(extra), extra[:min(len(extra), 5)])
		}
		return nil
	}
}

// publish drops an update zip of version into the updates folder, as an
// operator does (written aside, then renamed in), with extra manifest
// fields, and waits for the catalog to accept it. It returns the zip's
// sha256.
func (r *rig) publish(version string, extra map[string]any) string {
	r.t.Helper()
	m := map[string]any{"name": "Kiosk app", "version": version, "command": "true"}
	for k, v := range extra {
		m[k] = v
	}
	manifest, _ := json.Marshal(m)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("manifest.json")
	w.Write(manifest)
	w, _ = zw.Create("app.txt")
	fmt.Fprintf(w, "the app at %s\n", version)
	if err := zw.Close(); err != nil {
		r.t.Fatal(err)
	}
	if err := os.MkdirAll(r.updates, 0o755); err != nil {
		r.t.Fatal(err)
	}
	tmp := filepath.Join(r.t.TempDir(), "update.zip")
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(r.updates, "app-"+version+".zip")); err != nil {
		r.t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	r.waitCatalog("the catalog accepting "+version, func(c catalogView) error {
		for _, u := range c.Updates {
			if u.Version == version {
				return nil
			}
		}
		return fmt.Errorf("not in the catalog: %+v", c)
	})
	return hex.EncodeToString(sum[:])
}

// catalogView is GET /api/v1/catalog.
type catalogView struct {
	Updates []struct {
		Version string `json:"version"`
		SHA256  string `json:"sha256"`
	} `json:"updates"`
	Target       string `json:"target"`
	TargetReason string `json:"target_reason"`
}

func (r *rig) waitCatalog(what string, cond func(catalogView) error) catalogView {
	r.t.Helper()
	var c catalogView
	poll.Eventually(r.t, fleetWait, what, func() error {
		if err := r.tryGet("/api/v1/catalog", &c); err != nil {
			return err
		}
		return cond(c)
	})
	return c
}

// rigRollout is a rollout as the API shows it, with its members.
type rigRollout struct {
	fleet.Rollout
	Counts fleet.WaveCounts `json:"counts"`
}

// createRollout creates a rollout through the API.
func (r *rig) createRollout(spec fleet.RolloutSpec) {
	r.t.Helper()
	r.act(http.MethodPost, "/api/v1/rollouts", spec, http.StatusCreated, "rollout.create", spec.ID)
}

// rolloutAction is POST /api/v1/rollouts/{id}/{action}.
func (r *rig) rolloutAction(id, action string, body any) {
	r.t.Helper()
	r.act(http.MethodPost, "/api/v1/rollouts/"+id+"/"+action, body, http.StatusOK, "rollout."+action, id)
}

// rollout reads rollout id with its members.
func (r *rig) rollout(id string) rigRollout {
	r.t.Helper()
	var ro rigRollout
	r.get("/api/v1/rollouts/"+id+"?members=1", &ro)
	return ro
}

// waitRollout waits until cond holds of rollout id, and returns it.
func (r *rig) waitRollout(id, what string, cond func(rigRollout) error) rigRollout {
	r.t.Helper()
	var ro rigRollout
	poll.Eventually(r.t, fleetWait, what, func() error {
		if err := r.tryGet("/api/v1/rollouts/"+id+"?members=1", &ro); err != nil {
			return err
		}
		if err := cond(ro); err != nil {
			return fmt.Errorf("%w (rollout %s: %s %q, wave %d, counts %+v)", err, ro.ID, ro.State, ro.Reason, ro.Wave, waveCounts(ro))
		}
		return nil
	})
	return ro
}

func waveCounts(ro rigRollout) []fleet.WaveCounts {
	var cs []fleet.WaveCounts
	for _, w := range ro.Waves {
		cs = append(cs, w.Counts)
	}
	return cs
}

// inState is a condition: the rollout is in state st.
func inState(st fleet.RolloutState) func(rigRollout) error {
	return func(ro rigRollout) error {
		if ro.State != st {
			return fmt.Errorf("state %s, want %s", ro.State, st)
		}
		return nil
	}
}

// offeredVersion returns the agents that were ever offered version, by
// id.
func (r *rig) offeredVersion(version string) map[string]bool {
	got := map[string]bool{}
	for _, a := range r.fleet.Agents() {
		for _, o := range a.Offers() {
			if sameVersion(o.Version, version) {
				got[a.ID()] = true
			}
		}
	}
	return got
}

func sameVersion(a, b string) bool {
	c, err := wire.CompareVersions(a, b)
	return err == nil && c == 0
}

// ids are the ids of agents.
func ids(agents []*simfleet.Agent) []string {
	var out []string
	for _, a := range agents {
		out = append(out, a.ID())
	}
	return out
}

// membersOf are the ids of rollout ro's members in waves up to wave.
func membersOf(ro rigRollout, upTo int) []string {
	var out []string
	for id, m := range ro.Members {
		if m.Wave <= upTo {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
