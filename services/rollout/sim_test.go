package rollout_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/decision"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/services/rollout"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// env is a broker with its store, the decision and rollout services on
// it, and a simulated fleet that answers their offers by writing its
// device records as inventory would from the agents' reports.
type env struct {
	srv   *natstest.Server
	store *store.Store
	clock *clock
	stop  func() // stops the services start started
	sim   *sim
}

// clock is the services' injected clock: real time, shifted by an offset
// a test sets.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Set(t time.Time)     { c.offset.Store(int64(time.Until(t))) }
func (c *clock) Add(d time.Duration) { c.offset.Add(int64(d)) }

// setup starts a broker with catalog c and devices, the simulated fleet,
// and the services.
func setup(t *testing.T, c fleet.Catalog, devices ...fleet.Device) *env {
	t.Helper()
	srv := natstest.Start(t, natstest.Options{})
	e := &env{srv: srv, store: srv.Store(), clock: &clock{}}
	e.sim = newSim(t, e.store, srv.Conn("agents"))
	e.putCatalog(t, c)
	for _, d := range devices {
		e.putDevice(t, d)
	}
	e.stop = e.start(t)
	return e
}

// start starts the decision and rollout services; stop stops both.
func (e *env) start(t *testing.T) (stop func()) {
	t.Helper()
	d, err := decision.New(decision.Options{
		Log: natstest.Logger(t).With("service", "decision"), Store: e.store, Conn: e.srv.Conn("decision"),
		PublicURL: "http://updates.example:8080/", LinkKey: []byte("rollout-test-link-key"),
		// A failed install is tried again only after the test is over.
		Retry: decision.RetryPolicy{First: time.Hour, Tries: 5},
		Now:   e.clock.Now, WindowCheck: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := rollout.New(rollout.Options{Log: natstest.Logger(t).With("service", "rollout"), Store: e.store, Now: e.clock.Now, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stopD := natstest.Run(t, d.Run)
	stopR := natstest.Run(t, r.Run)
	return func() { stopR(); stopD() }
}

func (e *env) putCatalog(t *testing.T, c fleet.Catalog) {
	t.Helper()
	c.Updated = time.Now().UTC()
	if err := e.store.PutCatalog(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func (e *env) putDevice(t *testing.T, d fleet.Device) {
	t.Helper()
	if _, err := e.store.UpdateDevice(context.Background(), d.ID, func(r *fleet.Device) error {
		*r = d
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// report has device id report the version it runs, as an agent does on
// every connect.
func (e *env) report(t *testing.T, id, version string) {
	t.Helper()
	data, _ := json.Marshal(wire.VersionInstalled{Version: version})
	natstest.Publish(t, e.srv.Conn("intake"), wire.VersionInstalledSubject(id), data)
}

func (e *env) create(t *testing.T, r fleet.Rollout) {
	t.Helper()
	r, err := fleet.NewRollout(fleet.RolloutSpec{ID: r.ID, Version: r.Version, Selector: r.Selector, Group: r.Group, Waves: r.Waves, MaxConcurrent: r.MaxConcurrent}, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateRollout(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func (e *env) update(t *testing.T, id string, fn func(r *fleet.Rollout)) {
	t.Helper()
	if _, err := e.store.UpdateRollout(context.Background(), id, func(r *fleet.Rollout) error { fn(r); return nil }); err != nil {
		t.Fatal(err)
	}
}

func (e *env) rollout(t *testing.T, id string) fleet.Rollout {
	t.Helper()
	r, err := e.store.Rollout(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitRollout waits until rollout id satisfies cond, and returns it.
func (e *env) waitRollout(t *testing.T, id string, cond func(r fleet.Rollout) error) fleet.Rollout {
	t.Helper()
	var r fleet.Rollout
	natstest.Eventually(t, 20*time.Second, func() error {
		var err error
		if r, err = e.store.Rollout(context.Background(), id); err != nil {
			return err
		}
		return cond(r)
	})
	return r
}

// state is a condition: the rollout is in state st.
func state(st fleet.RolloutState) func(fleet.Rollout) error {
	return func(r fleet.Rollout) error {
		if r.State != st {
			return fmt.Errorf("rollout %s: %s (%s), wave %d, waves %+v, want %s", r.ID, r.State, r.Reason, r.Wave, counts(r), st)
		}
		return nil
	}
}

func counts(r fleet.Rollout) []fleet.WaveCounts {
	var cs []fleet.WaveCounts
	for _, w := range r.Waves {
		cs = append(cs, w.Counts)
	}
	return cs
}

// versions waits until every device runs want.
func (e *env) versions(t *testing.T, want map[string]string) {
	t.Helper()
	natstest.Eventually(t, 20*time.Second, func() error {
		for id, v := range want {
			d, err := natstest.Device(e.store, id)
			if err != nil {
				return err
			}
			if d.Version != v {
				return fmt.Errorf("%s runs %q, want %q", id, d.Version, v)
			}
		}
		return nil
	})
}

// offersInOpenWaves checks that every offer of r's release went to a
// member of r in a wave open at the time of the offer.
func offersInOpenWaves(t *testing.T, offers []offer, r fleet.Rollout) {
	t.Helper()
	for _, o := range offers {
		if o.Version != r.Version {
			continue
		}
		m, ok := r.Members[o.device]
		if !ok {
			t.Errorf("%s offered %s, but it is not a member of rollout %s", o.device, o.Version, r.ID)
			continue
		}
		opened := r.Waves[m.Wave].Opened
		if opened.IsZero() || o.Time.Before(opened.Truncate(time.Millisecond)) {
			t.Errorf("%s offered %s at %v, before its wave %d opened (%v)", o.device, o.Version, o.Time, m.Wave, opened)
		}
	}
}

// sim is the simulated fleet. Each offer is taken or refused by the
// agent's rules (agent/offers.go refuseOffer), and a taken one installed
// at once, recorded as inventory records it: it fails when fail says so,
// and stays installing while hold is set, until done.
type sim struct {
	t     *testing.T
	store *store.Store
	fail  atomic.Pointer[func(device, version string) bool]
	hold  atomic.Bool

	mu     sync.Mutex
	offers []offer
	held   []offer // installs under way, oldest first
	most   int     // the most installs under way at once
}

// offer is one offer received, with the device it went to.
type offer struct {
	device string
	wire.Offer
}

func newSim(t *testing.T, st *store.Store, nc *nats.Conn) *sim {
	s := &sim{t: t, store: st}
	ch := make(chan *nats.Msg, 4096)
	sub, err := nc.ChanSubscribe(wire.AllOffers, ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			s.take(m)
		}
	}()
	t.Cleanup(func() {
		_ = sub.Unsubscribe()
		close(ch)
		<-done
	})
	return s
}

func (s *sim) take(m *nats.Msg) {
	_, id, err := wire.ParseSubject(m.Subject)
	if err != nil {
		s.t.Errorf("offer on %s: %v", m.Subject, err)
		return
	}
	o, err := wire.Decode[wire.Offer](m.Data)
	if err != nil {
		s.t.Errorf("offer to %s does not validate: %v", id, err)
		return
	}
	s.mu.Lock()
	s.offers = append(s.offers, offer{id, o})
	s.mu.Unlock()
	d, err := natstest.Device(s.store, id)
	if err != nil {
		return // test over
	}
	in := d.Install
	switch {
	case d.Version != "" && same(o.Version, d.Version):
		return // already installed
	case !o.Rollback && !wire.Newer(o.Version, d.Version):
		return // older than the installed
	case in != nil && same(in.Version, o.Version) && in.State == wire.StateInstalling:
		return // under way
	case in != nil && same(in.Version, o.Version) && in.State == wire.StateFailed && !o.Retry:
		return // failed before
	}
	now := time.Now().UTC()
	install := &fleet.Install{OfferID: o.ID, Version: o.Version, Started: now, Updated: now}
	fail := s.fail.Load()
	switch {
	case fail != nil && (*fail)(id, o.Version):
		install.State, install.Detail = wire.StateFailed, "command exited with 1"
		s.write(id, func(d *fleet.Device) { d.Install = install })
	case s.hold.Load():
		install.State = wire.StateInstalling
		s.write(id, func(d *fleet.Device) { d.Install = install })
		s.mu.Lock()
		s.held = append(s.held, offer{id, o})
		s.most = max(s.most, len(s.held))
		s.mu.Unlock()
	default:
		install.State = wire.StateInstalled
		s.write(id, func(d *fleet.Device) { d.PreviousVersion, d.Version, d.Install = d.Version, o.Version, install })
	}
}

func (s *sim) write(id string, fn func(d *fleet.Device)) {
	_, err := s.store.UpdateDevice(context.Background(), id, func(d *fleet.Device) error { fn(d); return nil })
	if err != nil && !strings.Contains(err.Error(), "closed") {
		s.t.Errorf("write %s: %v", id, err)
	}
}

// done finishes the oldest install under way, and returns its device.
func (s *sim) done() string {
	s.mu.Lock()
	o := s.held[0]
	s.held = s.held[1:]
	s.mu.Unlock()
	s.write(o.device, func(d *fleet.Device) {
		d.PreviousVersion, d.Version = d.Version, o.Version
		d.Install = &fleet.Install{OfferID: o.ID, Version: o.Version, State: wire.StateInstalled, Started: time.Now().UTC(), Updated: time.Now().UTC()}
	})
	return o.device
}

// underWay returns how many installs are under way.
func (s *sim) underWay() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// received returns the offers received so far.
func (s *sim) received() []offer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.offers)
}

// offeredTo returns the versions offered to device id, in order.
func (s *sim) offeredTo(id string) []string {
	var vs []string
	for _, o := range s.received() {
		if o.device == id {
			vs = append(vs, o.Version)
		}
	}
	return vs
}

// devices returns n alive devices on linux/amd64 running version, named
// prefix00.., with labels.
func devices(prefix string, n int, version string, labels fleet.Labels) []fleet.Device {
	var ds []fleet.Device
	for i := range n {
		d := fleet.Device{ID: fmt.Sprintf("%s%02d", prefix, i), Alive: true, Version: version, Labels: labels, LastSeen: time.Now().UTC()}
		d.Hardware.OS, d.Hardware.Arch = "linux", "x86_64"
		ds = append(ds, d)
	}
	return ds
}

func same(a, b string) bool {
	c, err := wire.CompareVersions(a, b)
	return err == nil && c == 0
}

func sumOf(version string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(version))) }

func release(version string, platforms ...string) fleet.Release {
	return fleet.Release{Name: "Update " + version, Version: version, SHA256: sumOf(version), Size: 100, Command: "sh install.sh", File: "update-" + version + ".zip", Platforms: platforms}
}

// catalogOf is a catalog of releases, newest first; the target is the
// newest.
func catalogOf(releases ...fleet.Release) fleet.Catalog {
	return fleet.Catalog{Releases: releases, Target: releases[0].Version, TargetReason: "newest valid release"}
}
