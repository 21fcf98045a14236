package decision_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/downloadlink"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/decision"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

type env struct {
	srv    *natstest.Server
	retry  decision.RetryPolicy
	stop   func() // stops the service setup started
	store  *store.Store
	agent  *nats.Conn
	offers chan *nats.Msg
	now    func() time.Time // the clock of maintenance windows, when set
}

// setup starts a server with catalog c and a decision service, and
// listens to every offer.
func setup(t *testing.T, c fleet.Catalog, devices ...fleet.Device) env {
	return setupWith(t, decision.RetryPolicy{}, c, devices...)
}

// setupWith is setup with a retry policy.
func setupWith(t *testing.T, retry decision.RetryPolicy, c fleet.Catalog, devices ...fleet.Device) env {
	return setupAt(t, retry, nil, nil, c, devices...)
}

// setupAt is setupWith with groups, and a clock for the maintenance
// windows, looked at every 20 ms.
func setupAt(t *testing.T, retry decision.RetryPolicy, now func() time.Time, groups []fleet.Group, c fleet.Catalog, devices ...fleet.Device) env {
	srv := natstest.Start(t, natstest.Options{})
	e := env{srv: srv, store: srv.Store(), agent: srv.Conn("agent"), offers: make(chan *nats.Msg, 1000), retry: retry, now: now}
	if _, err := e.agent.ChanSubscribe(wire.AllOffers, e.offers); err != nil {
		t.Fatal(err)
	}
	if err := e.agent.Flush(); err != nil {
		t.Fatal(err)
	}
	e.putCatalog(t, c)
	for _, d := range devices {
		e.putDevice(t, d)
	}
	for _, g := range groups {
		if _, err := e.store.UpdateGroup(context.Background(), g.Name, func(stored *fleet.Group) error {
			*stored = g
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	e.stop = e.start(t)
	return e
}

// start starts a decision service on e's store; stop stops it.
func (e *env) start(t *testing.T) (stop func()) {
	t.Helper()
	s, err := decision.New(decision.Options{Metrics: natstest.Metrics,
		Log: natstest.Logger(t), Store: e.store, Conn: e.srv.Conn("decision"),
		PublicURL: "http://updates.example:8080/", LinkKey: linkKey, Retry: e.retry,
		Now: e.now, WindowCheck: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return natstest.Run(t, s.Run)
}

func (e env) putCatalog(t *testing.T, c fleet.Catalog) {
	t.Helper()
	c.Updated = time.Now().UTC()
	if err := e.store.PutCatalog(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func (e env) putDevice(t *testing.T, d fleet.Device) {
	t.Helper()
	_, err := e.store.UpdateDevice(context.Background(), d.ID, func(r *fleet.Device) error {
		*r = d
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (e env) report(t *testing.T, id, version string) {
	t.Helper()
	data, _ := json.Marshal(wire.VersionInstalled{Version: version})
	natstest.Publish(t, e.agent, wire.VersionInstalledSubject(id), data)
}

// offer is one offer received, with the device it went to.
type offer struct {
	device string
	wire.Offer
}

// next returns the next offer, failing the test if none comes in time.
func (e env) next(t *testing.T) offer {
	t.Helper()
	select {
	case m := <-e.offers:
		return e.decode(t, m)
	case <-time.After(10 * time.Second):
		t.Fatal("no offer within 10s")
		return offer{}
	}
}

// decode reads an offer off its message.
func (e env) decode(t *testing.T, m *nats.Msg) offer {
	t.Helper()
	_, id, err := wire.ParseSubject(m.Subject)
	if err != nil {
		t.Fatal(err)
	}
	o, err := wire.Decode[wire.Offer](m.Data)
	if err != nil {
		t.Fatalf("offer to %s does not validate: %v", id, err)
	}
	return offer{id, o}
}

// until collects offers until one reaches device.
func (e env) until(t *testing.T, device string) []offer {
	t.Helper()
	var got []offer
	for {
		o := e.next(t)
		if o.device == device {
			return got
		}
		got = append(got, o)
	}
}

const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// signature stands for a publisher's signature, which decision passes on
// without checking (the catalog did).
var signature = strings.Repeat("A", 86) + "=="

var linkKey = []byte("decision-test-link-key")

var catalog = fleet.Catalog{
	Releases: []fleet.Release{
		{Name: "Update 10", Version: "1.10.0", SHA256: sum, Size: 1234, Command: "sh install.sh", File: "update 1.10.zip", Signature: signature},
		{Name: "Update 9", Version: "1.9.0", SHA256: strings.Repeat("9", 64), Size: 99, Command: "sh install.sh", File: "update-1.9.zip"},
	},
	Target: "1.10.0", TargetReason: "newest valid release",
}

func failed(version, detail string) *fleet.Install {
	return &fleet.Install{Version: version, State: wire.StateFailed, Detail: detail}
}

func TestOfferOnReport(t *testing.T) {
	tests := []struct {
		device   string
		reported string
		record   *fleet.Device // stored before the report, if any
		want     bool
	}{
		{device: "old", reported: "1.9.0", want: true},
		{device: "never-installed", reported: "", want: true},
		{device: "not-a-string-compare", reported: "1.9.10", want: true},
		{device: "beta", reported: "1.10.0-beta", want: true},
		{device: "same", reported: "1.10.0", want: false},
		{device: "same-shorter", reported: "1.10", want: false},
		{device: "newer", reported: "2.0", want: false},
		{device: "failed-target", reported: "1.9.0", record: &fleet.Device{Version: "1.9.0", Install: failed("1.10.0", "command exited with 1")}, want: false},
		{device: "failed-other", reported: "1.9.0", record: &fleet.Device{Version: "1.9.0", Install: failed("1.9.5", "command exited with 1")}, want: true},
		{device: "interrupted", reported: "1.9.0", record: &fleet.Device{Version: "1.9.0", Install: failed("1.10.0", "interrupted: agent restarted")}, want: true},
		{device: "stale-report", reported: "1.9.0", record: &fleet.Device{Version: "1.10.0"}, want: false},
		{device: "record-lags", reported: "1.9.0", record: &fleet.Device{Version: "1.0"}, want: true},
	}
	var records []fleet.Device
	for _, tt := range tests {
		if tt.record != nil {
			d := *tt.record
			d.ID = tt.device
			records = append(records, d)
		}
	}
	e := setup(t, catalog, records...)
	sentBefore := natstest.Counter(t, "thinfleet_offers_sent_total", nil)
	for _, tt := range tests {
		e.report(t, tt.device, tt.reported)
	}
	// Reports are handled in order: once the sentinel's offer is in, every
	// offer there will be is.
	e.report(t, "sentinel", "1.0")
	got := map[string]offer{}
	for _, o := range e.until(t, "sentinel") {
		if _, dup := got[o.device]; dup {
			t.Errorf("%s offered twice", o.device)
		}
		got[o.device] = o
	}
	ids := map[string]bool{}
	for _, tt := range tests {
		o, offered := got[tt.device]
		if offered != tt.want {
			t.Errorf("%s reporting %q: offered = %v, want %v", tt.device, tt.reported, offered, tt.want)
			continue
		}
		if !offered {
			continue
		}
		checkLink(t, o.Offer, "update 1.10.zip")
		want := wire.Offer{
			ID: o.ID, Name: "Update 10", Version: "1.10.0", SHA256: sum, Size: 1234, Command: "sh install.sh",
			URL: o.URL, Time: o.Time, Signature: signature,
		}
		if o.Offer != want {
			t.Errorf("offer to %s:\n got %+v\nwant %+v", tt.device, o.Offer, want)
		}
		if o.ID == "" || ids[o.ID] {
			t.Errorf("offer id %q empty or reused", o.ID)
		}
		ids[o.ID] = true
	}
	if got, want := natstest.Counter(t, "thinfleet_offers_sent_total", nil)-sentBefore, float64(len(got)+1); got != want {
		t.Errorf("offers_sent grew by %v, want %v", got, want)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		evs := natstest.Events(t, e.store, "old")
		if len(evs) != 1 || evs[0].Event != fleet.EventOffered || evs[0].Version != "1.10.0" {
			return fmt.Errorf("events of old: %+v, want one offered 1.10.0", evs)
		}
		return nil
	})
}

func TestOfferOnCatalogChange(t *testing.T) {
	devices := []struct {
		fleet.Device
		want19, want110 bool // offered 1.9.0 when pinned, 1.10.0 when newest
	}{
		{fleet.Device{ID: "alive-old", Alive: true, Version: "1.0"}, true, true},
		{fleet.Device{ID: "alive-none", Alive: true}, true, true},
		{fleet.Device{ID: "alive-interrupted", Alive: true, Version: "1.0", Install: failed("1.10.0", "interrupted: power lost")}, true, true},
		{fleet.Device{ID: "alive-failed", Alive: true, Version: "1.0", Install: failed("1.10.0", "exit status 2")}, true, false},
		{fleet.Device{ID: "dead-old", Alive: false, Version: "1.0"}, false, false},
		{fleet.Device{ID: "alive-between", Alive: true, Version: "1.9.5"}, false, true},
		{fleet.Device{ID: "alive-same", Alive: true, Version: "1.10.0"}, false, false},
		{fleet.Device{ID: "alive-newer", Alive: true, Version: "3.0"}, false, false},
	}
	var stored []fleet.Device
	want := map[string]map[string]bool{"1.9.0": {}, "1.10.0": {}}
	for _, d := range devices {
		stored = append(stored, d.Device)
		want["1.9.0"][d.ID] = d.want19
		want["1.10.0"][d.ID] = d.want110
	}
	pinned := catalog
	pinned.Target, pinned.TargetReason = "1.9.0", "pinned by updates/target"
	e := setup(t, pinned, stored...)

	// count[version][device] counts offers; every offer must be wanted.
	count := map[string]map[string]int{"1.9.0": {}, "1.10.0": {}}
	complete := func(version string, n int) bool {
		for id, w := range want[version] {
			if w && count[version][id] < n {
				return false
			}
		}
		return true
	}
	receive := func(version string, n int) {
		t.Helper()
		for !complete(version, n) {
			o := e.next(t)
			if !want[o.Version][o.device] {
				t.Errorf("%s offered to %s", o.Version, o.device)
				continue
			}
			count[o.Version][o.device]++
		}
	}
	// The catalog at start: an older version pinned, offered to the
	// devices below it only.
	receive("1.9.0", 1)
	// Unpinned: the newest goes to every alive device below it but one
	// whose install of it failed. Every change offers again, and a change
	// is handled after the one before, so two offers to each device mean
	// that every offer of the first change was received and checked.
	e.putCatalog(t, catalog)
	e.putCatalog(t, catalog)
	receive("1.10.0", 2)
	for version, devices := range count {
		for id, n := range devices {
			if version == "1.9.0" && n != 1 {
				t.Errorf("1.9.0 offered %d times to %s, want once", n, id)
			}
		}
	}
}

func TestGarbage(t *testing.T) {
	e := setup(t, catalog)
	badJSON := natstest.Dropped(t, "version.installed", "bad_json")
	invalid := natstest.Dropped(t, "version.installed", "invalid")
	badSubject := natstest.Dropped(t, "unknown", "bad_subject")
	random := make([]byte, 2048)
	for i := range random {
		random[i] = byte(rand.IntN(256))
	}
	for _, g := range []struct{ subject, data string }{
		{wire.VersionInstalledSubject("dev-1"), string(random)},
		{wire.VersionInstalledSubject("dev-1"), `{"version": ["1.0"]}`},
		{wire.VersionInstalledSubject("dev-1"), `{"version": "` + strings.Repeat("1.", 30<<10) + `0"}`},
		{wire.VersionInstalledSubject("dev-1"), `{"version": "latest"}`},
		{"version.installed.bad!id", `{"version": "1.0"}`},
		{"version.installed.ü", `{"version": "1.0"}`},
	} {
		natstest.Publish(t, e.agent, g.subject, []byte(g.data))
	}
	e.report(t, "dev-1", "1.0")
	if o := e.next(t); o.device != "dev-1" {
		t.Errorf("first offer to %s, want dev-1 (garbage offered?)", o.device)
	}
	for _, c := range []struct {
		kind, reason string
		before, want float64
	}{
		{"version.installed", "bad_json", badJSON, 2},
		{"version.installed", "invalid", invalid, 2},
		{"unknown", "bad_subject", badSubject, 2},
	} {
		if got := natstest.Dropped(t, c.kind, c.reason) - c.before; got != c.want {
			t.Errorf("dropped{%s,%s} grew by %v, want %v", c.kind, c.reason, got, c.want)
		}
	}
}

func TestNew(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	store, nc := srv.Store(), srv.Conn("x")
	for _, u := range []string{"", "updates.example:8080", "ftp://host/", "http://"} {
		if _, err := decision.New(decision.Options{Metrics: natstest.Metrics, Store: store, Conn: nc, PublicURL: u, LinkKey: linkKey}); err == nil {
			t.Errorf("New with public URL %q: no error", u)
		}
	}
	if _, err := decision.New(decision.Options{Metrics: natstest.Metrics, Store: store, Conn: nc, PublicURL: "https://fleet.example", LinkKey: linkKey}); err != nil {
		t.Errorf("New: %v", err)
	}
	for _, key := range [][]byte{nil, []byte("short")} {
		if _, err := decision.New(decision.Options{Metrics: natstest.Metrics, Store: store, Conn: nc, PublicURL: "https://fleet.example", LinkKey: key}); err == nil {
			t.Errorf("New with link key %q: no error", key)
		}
	}
}

// checkLink checks that an offer's URL is a download link to file, signed
// with the link key and expiring with the offer.
func checkLink(t *testing.T, o wire.Offer, file string) {
	t.Helper()
	u, err := url.Parse(o.URL)
	if err != nil {
		t.Fatal(err)
	}
	if base := u.Scheme + "://" + u.Host + u.EscapedPath(); base != "http://updates.example:8080/downloads/"+url.PathEscape(file) {
		t.Errorf("offer URL %q, want the download of %q", o.URL, file)
	}
	if err := downloadlink.Check(linkKey, file, u.Query(), time.Now()); err != nil {
		t.Errorf("offer URL %q: %v", o.URL, err)
	}
	exp, _ := strconv.ParseInt(u.Query().Get("exp"), 10, 64)
	if got := time.Unix(exp, 0).Sub(o.Time); got < downloadlink.Lifetime-time.Second || got > downloadlink.Lifetime {
		t.Errorf("the link expires %s after the offer, want %s", got, downloadlink.Lifetime)
	}
	if err := downloadlink.Check(linkKey, file, u.Query(), o.Time.Add(downloadlink.Lifetime+time.Second)); err == nil {
		t.Error("the link is still valid after its lifetime")
	}
}
