package inventory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/services/inventory"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

type env struct {
	store *store.Store
	nc    *nats.Conn
}

func setup(t *testing.T) env {
	srv := natstest.Start(t, natstest.Options{})
	store := srv.Store()
	s, err := inventory.New(inventory.Options{Metrics: natstest.Metrics, Log: natstest.Logger(t), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, s.Run)
	return env{store: store, nc: srv.Conn("agent")}
}

func (e env) send(t *testing.T, subject string, msg any) {
	t.Helper()
	data, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Publish(t, e.nc, subject, data)
}

// waitDevice waits until device id satisfies cond.
func (e env) waitDevice(t *testing.T, id string, cond func(fleet.Device) error) fleet.Device {
	t.Helper()
	var d fleet.Device
	natstest.Eventually(t, 10*time.Second, func() error {
		var err error
		if d, err = natstest.Device(e.store, id); err != nil {
			return err
		}
		return cond(d)
	})
	return d
}

// settle waits until the inventory has handled every message sent so
// far: its consumer has none left to deliver nor to be acknowledged (a
// message is acknowledged once handled). Messages of different devices
// are handled side by side, so a later message of another device says
// nothing of an earlier one.
func (e env) settle(t *testing.T) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Every message the stream holds is acknowledged: the consumer's
		// acknowledgement floor has reached the stream's last message.
		// (Its pending counts alone may not have heard of a message
		// stored a moment ago.)
		st, err := e.store.JetStream().Stream(ctx, store.AgentStream)
		if err != nil {
			return err
		}
		sinfo, err := st.Info(ctx)
		if err != nil {
			return err
		}
		c, err := e.store.JetStream().Consumer(ctx, store.AgentStream, inventory.ConsumerName)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < sinfo.State.LastSeq || info.NumAckPending > 0 {
			return fmt.Errorf("acknowledged up to %d of %d, %d to acknowledge", info.AckFloor.Stream, sinfo.State.LastSeq, info.NumAckPending)
		}
		return nil
	})
}

// sync sends a version report and waits for it: the consumer handles a
// device's messages in order, so everything sent before for id has been
// handled.
func (e env) sync(t *testing.T, id, version string) fleet.Device {
	t.Helper()
	e.send(t, wire.VersionInstalledSubject(id), wire.VersionInstalled{Version: version})
	return e.waitDevice(t, id, func(d fleet.Device) error {
		if d.Version != version {
			return fmt.Errorf("version %q, want %q", d.Version, version)
		}
		return nil
	})
}

func kinds(evs []fleet.Event) string {
	var out []string
	for _, e := range evs {
		s := string(e.Event)
		if e.Detail != "" {
			s += "(" + e.Detail + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

var hw = wire.Hardware{
	Hostname: "pos-17", OS: "linux", Platform: "debian", Arch: "amd64", CPUModel: "i5", CPUCores: 4,
	MemoryTotal: 8 << 30, Disks: []wire.Disk{{Mount: "/", FSType: "ext4", Total: 100 << 30, Free: 40 << 30}},
}

func TestHardware(t *testing.T) {
	e := setup(t)
	const id = "pos-17"
	e.send(t, wire.HWReportSubject(id), wire.HWReport{Hardware: hw, AgentVersion: "0.3.0"})
	d := e.waitDevice(t, id, func(d fleet.Device) error {
		if d.Hostname != "pos-17" {
			return fmt.Errorf("hostname %q", d.Hostname)
		}
		return nil
	})
	if d.AgentVersion != "0.3.0" || d.Hardware.MemoryTotal != 8<<30 || d.FirstSeen.IsZero() || d.LastSeen.Before(d.FirstSeen) {
		t.Errorf("device after first report: %+v", d)
	}
	firstSeen := d.FirstSeen

	// Only free space changed: nothing to tell.
	again := hw
	again.Disks = []wire.Disk{{Mount: "/", FSType: "ext4", Total: 100 << 30, Free: 10 << 30}}
	e.send(t, wire.HWReportSubject(id), wire.HWReport{Hardware: again, AgentVersion: "0.3.0"})
	e.sync(t, id, "1.0")

	// New memory and a new disk.
	upgraded := hw
	upgraded.MemoryTotal = 16 << 30
	upgraded.Disks = append([]wire.Disk{}, hw.Disks[0], wire.Disk{Mount: "/data", Total: 1 << 40})
	e.send(t, wire.HWReportSubject(id), wire.HWReport{Hardware: upgraded, AgentVersion: "0.4.0"})
	d = e.sync(t, id, "1.1")

	if d.Hardware.MemoryTotal != 16<<30 || len(d.Hardware.Disks) != 2 || d.AgentVersion != "0.4.0" {
		t.Errorf("hardware not updated: %+v", d)
	}
	if !d.FirstSeen.Equal(firstSeen) {
		t.Errorf("FirstSeen moved from %v to %v", firstSeen, d.FirstSeen)
	}
	if got, want := kinds(natstest.Events(t, e.store, id)), "registered hardware_changed(memory_total, disks)"; got != want {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func TestVersion(t *testing.T) {
	e := setup(t)
	const id = "pos-2"
	tests := []struct {
		sent     wire.VersionInstalled
		version  string
		previous string
	}{
		{wire.VersionInstalled{}, "", ""},
		{wire.VersionInstalled{Version: "1.0"}, "1.0", ""},
		{wire.VersionInstalled{Version: "1.0"}, "1.0", ""},
		{wire.VersionInstalled{Version: "1.1"}, "1.1", "1.0"},
		{wire.VersionInstalled{Version: "1.2", PreviousVersion: "1.1"}, "1.2", "1.1"},
		{wire.VersionInstalled{Version: "1.2"}, "1.2", "1.1"},
	}
	for _, tt := range tests {
		e.send(t, wire.VersionInstalledSubject(id), tt.sent)
		e.settle(t)
		d, err := natstest.Device(e.store, id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Version != tt.version || d.PreviousVersion != tt.previous {
			t.Errorf("after %+v: version %q previous %q, want %q %q", tt.sent, d.Version, d.PreviousVersion, tt.version, tt.previous)
		}
	}
	// The same version again, as an agent says each time it connects:
	// the record is not written at all.
	_, before, err := e.store.ReadDevice(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	e.send(t, wire.VersionInstalledSubject(id), wire.VersionInstalled{Version: "1.2"})
	e.settle(t)
	if _, after, err := e.store.ReadDevice(context.Background(), id); err != nil || after.Revision != before.Revision {
		t.Errorf("an unchanged version rewrote the record: revision %d, then %d (%v)", before.Revision, after.Revision, err)
	}
	// Registered once, by the first message whatever its kind.
	if got := kinds(natstest.Events(t, e.store, id)); got != "registered" {
		t.Errorf("events = %q, want registered", got)
	}
}

func TestInstall(t *testing.T) {
	e := setup(t)
	const id = "pos-3"
	st := func(offer, version string, state wire.State, progress bool, done int64) wire.Status {
		return wire.Status{OfferID: offer, Version: version, State: state, Progress: progress, BytesDone: done, BytesTotal: 100}
	}
	var started time.Time
	steps := []struct {
		sent     wire.Status
		newStart bool
	}{
		{st("o1", "1.1", wire.StateDownloading, false, 0), true},
		{st("o1", "1.1", wire.StateDownloading, true, 50), false},
		{st("o1", "1.1", wire.StateVerifying, false, 100), false},
		{st("o1", "1.1", wire.StateFailed, false, 100), false},
		// The agent retries the same offer after a crash: a new download.
		{st("o1", "1.1", wire.StateDownloading, false, 0), true},
		{st("o1", "1.1", wire.StateInstalling, false, 0), false},
		// Another offer reporting straight away in progress.
		{st("o2", "1.2", wire.StateDownloading, true, 10), true},
		{st("o2", "1.2", wire.StateInstalled, false, 0), false},
		// A failure quoting the signed download link keeps the link, not
		// its signature.
		{wire.Status{OfferID: "o3", Version: "1.3", State: wire.StateFailed, Detail: "GET http://f/downloads/u.zip?exp=1&sig=abc: 503", Output: "u.zip?exp=1&sig=abc"}, true},
	}
	for i, step := range steps {
		e.send(t, wire.StatusSubject(id), step.sent)
		e.settle(t)
		d, err := natstest.Device(e.store, id)
		if err != nil {
			t.Fatal(err)
		}
		in := d.Install
		if in == nil {
			t.Fatalf("step %d: no install", i)
		}
		if in.OfferID != step.sent.OfferID || in.Version != step.sent.Version || in.State != step.sent.State || in.BytesDone != step.sent.BytesDone {
			t.Errorf("step %d: install %+v, want %+v", i, *in, step.sent)
		}
		if got := !in.Started.Equal(started); got != step.newStart {
			t.Errorf("step %d: new start = %v, want %v (started %v, was %v)", i, got, step.newStart, in.Started, started)
		}
		if in.Updated.Before(in.Started) {
			t.Errorf("step %d: updated %v before started %v", i, in.Updated, in.Started)
		}
		if strings.Contains(in.Detail+in.Output, "sig=") {
			t.Errorf("step %d: the install record shows a link's signature: %q, %q", i, in.Detail, in.Output)
		}
		started = in.Started
	}
}

func TestGarbage(t *testing.T) {
	e := setup(t)
	type counter struct{ kind, reason string }
	watched := []counter{
		{"hw.report", "bad_json"}, {"hw.report", "invalid"},
		{"version.installed", "bad_json"}, {"version.installed", "invalid"},
		{"update.status", "invalid"}, {"unknown", "bad_subject"},
	}
	before := map[counter]float64{}
	for _, c := range watched {
		before[c] = natstest.Dropped(t, c.kind, c.reason)
	}
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rand.IntN(256))
	}
	huge := wire.HWReport{Hardware: wire.Hardware{Hostname: strings.Repeat("h", 60<<10)}}
	hugeJSON, _ := json.Marshal(huge)
	manyDisks := wire.Hardware{Disks: make([]wire.Disk, 65)}
	manyJSON, _ := json.Marshal(wire.HWReport{Hardware: manyDisks})
	garbage := []struct {
		subject string
		data    []byte
		counts  counter
	}{
		{wire.HWReportSubject("dev-1"), random, counter{"hw.report", "bad_json"}},
		{wire.HWReportSubject("dev-1"), []byte(`{"hardware": "x"}`), counter{"hw.report", "bad_json"}},
		{wire.HWReportSubject("dev-1"), hugeJSON, counter{"hw.report", "invalid"}},
		{wire.HWReportSubject("dev-1"), manyJSON, counter{"hw.report", "invalid"}},
		{wire.HWReportSubject("dev-1"), []byte(`{"hardware":{"cpu_cores":-1}}`), counter{"hw.report", "invalid"}},
		{wire.VersionInstalledSubject("dev-1"), []byte(`null x`), counter{"version.installed", "bad_json"}},
		{wire.VersionInstalledSubject("dev-1"), []byte(`{"version":"v1..2"}`), counter{"version.installed", "invalid"}},
		{wire.StatusSubject("dev-1"), []byte(`{"version":"1.0","state":"installed","bytes_done":-5}`), counter{"update.status", "invalid"}},
		{"hw.report.bad$id", []byte(`{}`), counter{"unknown", "bad_subject"}},
		{"version.installed." + strings.Repeat("x", 100), []byte(`{"version":"1.0"}`), counter{"unknown", "bad_subject"}},
	}
	want := map[counter]float64{}
	for _, g := range garbage {
		natstest.Publish(t, e.nc, g.subject, g.data)
		want[g.counts]++
	}
	d := e.sync(t, "dev-1", "1.0")
	e.settle(t)
	if d.Hostname != "" || d.Install != nil {
		t.Errorf("garbage reached the record: %+v", d)
	}
	for _, c := range watched {
		if got := natstest.Dropped(t, c.kind, c.reason) - before[c]; got != want[c] {
			t.Errorf("dropped{%s,%s} grew by %v, want %v", c.kind, c.reason, got, want[c])
		}
	}
}

// TestInterfaceChurn: containers starting and stopping (docker0, veths,
// bridges) change a machine's interfaces many times an hour. A report
// that differs only in those is no hardware_changed event and no write
// of the record; the interfaces are brought up to date with the next
// real change, whose event names only what really changed.
func TestInterfaceChurn(t *testing.T) {
	e := setup(t)
	const id = "docker-host"
	base := hw
	base.Interfaces = []wire.Interface{{Name: "eth0", MAC: "52:54:00:aa:bb:cc", Addresses: []string{"10.0.0.5/24"}}}
	e.send(t, wire.HWReportSubject(id), wire.HWReport{Hardware: base, AgentVersion: "0.3.0"})
	e.sync(t, id, "1.0")

	names := func(d fleet.Device) string {
		var out []string
		for _, n := range d.Hardware.Interfaces {
			out = append(out, n.Name)
		}
		return strings.Join(out, ",")
	}
	for i := range 5 {
		churned := base
		churned.Interfaces = append(slices.Clone(base.Interfaces),
			wire.Interface{Name: "docker0", MAC: "02:42:00:00:00:01", Addresses: []string{"172.17.0.1/16"}},
			wire.Interface{Name: fmt.Sprintf("veth%07x", i), MAC: fmt.Sprintf("9e:00:00:00:00:%02x", i)},
			wire.Interface{Name: fmt.Sprintf("br-%012x", i)},
		)
		e.send(t, wire.HWReportSubject(id), wire.HWReport{Hardware: churned, AgentVersion: "0.3.0"})
	}
	d := e.sync(t, id, "1.1")
	if got := names(d); got != "eth0" {
		t.Errorf("interfaces after churn = %s, want eth0 alone: a churn-only report was written", got)
	}

	// A real change: more memory, and the containers still there.
	upgraded := base
	upgraded.MemoryTotal = 32 << 30
	upgraded.Interfaces = append(slices.Clone(base.Interfaces), wire.Interface{Name: "docker0", MAC: "02:42:00:00:00:01"})
	e.send(t, wire.HWReportSubject(id), wire.HWReport{Hardware: upgraded, AgentVersion: "0.3.0"})
	d = e.sync(t, id, "1.2")
	if got := names(d); got != "eth0,docker0" || d.Hardware.MemoryTotal != 32<<30 {
		t.Errorf("after a real change: interfaces %s, memory %d; want eth0,docker0 and 32 GiB", got, d.Hardware.MemoryTotal)
	}
	if got, want := kinds(natstest.Events(t, e.store, id)), "registered hardware_changed(memory_total)"; got != want {
		t.Errorf("events = %q, want %q", got, want)
	}
}

// TestLabels: the labels an agent reports land in the record, and a
// report with other labels replaces them.
func TestLabels(t *testing.T) {
	e := setup(t)
	const id = "kiosk-berlin"
	e.send(t, wire.HWReportSubject(id), wire.HWReport{Hardware: hw, Labels: map[string]string{"site": "berlin", "ring": "canary"}})
	d := e.sync(t, id, "1.0")
	if want := (fleet.Labels{"site": "berlin", "ring": "canary"}); !maps.Equal(d.Labels, want) {
		t.Errorf("labels = %v, want %v", d.Labels, want)
	}
	e.send(t, wire.HWReportSubject(id), wire.HWReport{Hardware: hw, Labels: map[string]string{"site": "berlin"}})
	d = e.sync(t, id, "1.1")
	if want := (fleet.Labels{"site": "berlin"}); !maps.Equal(d.Labels, want) {
		t.Errorf("labels after the agent dropped one = %v, want %v", d.Labels, want)
	}
	// A report whose labels break the rules is refused whole.
	e.send(t, wire.HWReportSubject(id), map[string]any{"hardware": hw, "labels": map[string]string{"site": "ber lin"}})
	d = e.sync(t, id, "1.2")
	if want := (fleet.Labels{"site": "berlin"}); !maps.Equal(d.Labels, want) {
		t.Errorf("labels after an invalid report = %v, want %v", d.Labels, want)
	}
}
