package history_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/history"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

type env struct {
	store *store.Store
	nc    *nats.Conn
	start func() (stop func())
}

func setup(t *testing.T) env {
	srv := natstest.Start(t, natstest.Options{})
	store := srv.Store()
	start := func() func() {
		s, err := history.New(history.Options{Metrics: natstest.Metrics, Log: natstest.Logger(t), Store: store})
		if err != nil {
			t.Fatal(err)
		}
		return natstest.Run(t, s.Run)
	}
	return env{store: store, nc: srv.Conn("agent"), start: start}
}

func (e env) status(t *testing.T, id string, st wire.Status) {
	t.Helper()
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Publish(t, e.nc, wire.StatusSubject(id), data)
}

// waitEvents waits until device has n events and returns them, oldest
// first.
func waitEvents(t *testing.T, st *store.Store, device string, n int) []fleet.Event {
	t.Helper()
	var evs []fleet.Event
	natstest.Eventually(t, 10*time.Second, func() error {
		evs = natstest.Events(t, st, device)
		if len(evs) < n {
			return fmt.Errorf("%s has %d events, want %d", device, len(evs), n)
		}
		return nil
	})
	return evs
}

func TestEvents(t *testing.T) {
	e := setup(t)
	e.start()
	installedBefore := natstest.Counter(t, "thinfleet_installs_total", map[string]string{"result": "installed"})
	failedBefore := natstest.Counter(t, "thinfleet_installs_total", map[string]string{"result": "failed"})

	output := "unpacking\n" + strings.Repeat("x", 40) + "\ncp: cannot create /opt/app: Read-only file system\nexit status 1\n\n"
	tests := []struct {
		device string
		sent   []wire.Status
		want   []string // event/version/detail
	}{
		{
			device: "ok-1",
			sent: []wire.Status{
				{OfferID: "o1", Version: "1.2.0", State: wire.StateDownloading},
				{OfferID: "o1", Version: "1.2.0", State: wire.StateDownloading, Progress: true, BytesDone: 10, BytesTotal: 100},
				{OfferID: "o1", Version: "1.2.0", State: wire.StateDownloading, Progress: true, BytesDone: 100, BytesTotal: 100},
				{OfferID: "o1", Version: "1.2.0", State: wire.StateVerifying},
				{OfferID: "o1", Version: "1.2.0", State: wire.StateInstalling, Detail: "sh install.sh"},
				{OfferID: "o1", Version: "1.2.0", State: wire.StateInstalled},
			},
			want: []string{"downloading/1.2.0/", "verifying/1.2.0/", "installing/1.2.0/sh install.sh", "installed/1.2.0/"},
		},
		{
			device: "bad-1",
			sent: []wire.Status{
				{OfferID: "o2", Version: "1.2.0", State: wire.StateDownloading},
				{OfferID: "o2", Version: "1.2.0", State: wire.StateFailed, Detail: "command exited with 1", Output: output},
			},
			want: []string{
				"downloading/1.2.0/",
				"failed/1.2.0/command exited with 1 (output: cp: cannot create /opt/app: Read-only file system / exit status 1)",
			},
		},
		{
			// The agent quotes its download link; its signature is a
			// credential until it expires and stays out of the history.
			device: "bad-3",
			sent: []wire.Status{{Version: "2.0", State: wire.StateFailed,
				Detail: `download: GET http://fleet:8080/downloads/u.zip?exp=1767225600&sig=c2VjcmV0: 503`, Output: "curl http://fleet:8080/downloads/u.zip?exp=1&sig=abc"}},
			want: []string{"failed/2.0/download: GET http://fleet:8080/downloads/u.zip: 503 (output: curl http://fleet:8080/downloads/u.zip)"},
		},
		{
			device: "bad-2",
			sent:   []wire.Status{{Version: "2.0", State: wire.StateFailed, Detail: "interrupted: agent restarted"}},
			want:   []string{"failed/2.0/interrupted: agent restarted"},
		},
	}
	for _, tt := range tests {
		for _, st := range tt.sent {
			e.status(t, tt.device, st)
		}
	}
	for _, tt := range tests {
		t.Run(tt.device, func(t *testing.T) {
			evs := waitEvents(t, e.store, tt.device, len(tt.want))
			var got []string
			for _, ev := range evs {
				got = append(got, fmt.Sprintf("%s/%s/%s", ev.Event, ev.Version, ev.Detail))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("events:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	if got := natstest.Counter(t, "thinfleet_installs_total", map[string]string{"result": "installed"}) - installedBefore; got != 1 {
		t.Errorf("installs{installed} grew by %v, want 1", got)
	}
	if got := natstest.Counter(t, "thinfleet_installs_total", map[string]string{"result": "failed"}) - failedBefore; got != 3 {
		t.Errorf("installs{failed} grew by %v, want 3", got)
	}
}

func TestRedeliveredKeptOnce(t *testing.T) {
	e := setup(t)
	stop := e.start()
	e.status(t, "dev-1", wire.Status{Version: "1.0", State: wire.StateDownloading})
	e.status(t, "dev-1", wire.Status{Version: "1.0", State: wire.StateInstalled})
	waitEvents(t, e.store, "dev-1", 2)
	stop()
	installed := natstest.Counter(t, "thinfleet_installs_total", map[string]string{"result": "installed"})

	// Losing the consumer makes JetStream deliver every status again, with
	// the ids they had.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.store.JetStream().DeleteConsumer(ctx, store.AgentStream, history.ConsumerName); err != nil {
		t.Fatal(err)
	}
	e.start()
	e.status(t, "sentinel", wire.Status{Version: "1.0", State: wire.StateInstalled})
	waitEvents(t, e.store, "sentinel", 1) // the replay came before it

	if evs := natstest.Events(t, e.store, "dev-1"); len(evs) != 2 {
		t.Errorf("dev-1 has %d events after redelivery, want 2: %+v", len(evs), evs)
	}
	// The sentinel's install is the only new one.
	if got := natstest.Counter(t, "thinfleet_installs_total", map[string]string{"result": "installed"}) - installed; got != 1 {
		t.Errorf("installs{installed} grew by %v over the redelivery, want 1 (the sentinel's)", got)
	}
}

func TestGarbage(t *testing.T) {
	e := setup(t)
	e.start()
	badJSON := natstest.Dropped(t, "update.status", "bad_json")
	invalid := natstest.Dropped(t, "update.status", "invalid")
	badSubject := natstest.Dropped(t, "unknown", "bad_subject")

	random := make([]byte, 512)
	for i := range random {
		random[i] = byte(rand.IntN(256))
	}
	garbage := []struct {
		subject string
		data    string
	}{
		{wire.StatusSubject("dev-1"), string(random)},
		{wire.StatusSubject("dev-1"), ""},
		{wire.StatusSubject("dev-1"), `{"version": 1}`},
		{wire.StatusSubject("dev-1"), `[1,2,3]`},
		{wire.StatusSubject("dev-1"), `{"version":"1.0","state":"exploded"}`},
		{wire.StatusSubject("dev-1"), `{"version":"not a version","state":"installed"}`},
		{wire.StatusSubject("dev-1"), `{"version":"1.0","state":"failed","detail":"` + strings.Repeat("d", 60<<10) + `"}`},
		{"update.status.bad!id", `{"version":"1.0","state":"installed"}`},
		{"update.status." + strings.Repeat("a", 65), `{"version":"1.0","state":"installed"}`},
	}
	for _, g := range garbage {
		natstest.Publish(t, e.nc, g.subject, []byte(g.data))
	}
	// Too large for the stream: refused before any service sees it.
	if err := e.nc.Publish(wire.StatusSubject("dev-1"), make([]byte, 1<<20-1024)); err != nil {
		t.Fatal(err)
	}
	e.status(t, "dev-1", wire.Status{Version: "1.0", State: wire.StateInstalled})
	evs := waitEvents(t, e.store, "dev-1", 1)
	if len(evs) != 1 || evs[0].Event != fleet.EventInstalled {
		t.Errorf("events after garbage: %+v, want one installed", evs)
	}
	for _, c := range []struct {
		kind, reason string
		before, want float64
	}{
		{"update.status", "bad_json", badJSON, 4},
		{"update.status", "invalid", invalid, 3},
		{"unknown", "bad_subject", badSubject, 2},
	} {
		if got := natstest.Dropped(t, c.kind, c.reason) - c.before; got != c.want {
			t.Errorf("dropped{%s,%s} grew by %v, want %v", c.kind, c.reason, got, c.want)
		}
	}
}

// TestBacklogKeptWhole stops nothing at consumption: statuses that the
// stream acknowledged while the history service was down, far more than a
// device may send in a second, all become events once it is back.
func TestBacklogKeptWhole(t *testing.T) {
	e := setup(t)
	const n = 400
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		st := wire.Status{OfferID: fmt.Sprintf("o%d", i), Version: fmt.Sprintf("1.%d", i), State: wire.StateFailed, Detail: "boom"}
		data, _ := json.Marshal(st)
		if _, err := js.PublishAsync(store.StoredSubject(wire.StatusSubject("busy")), data); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not acknowledge the backlog")
	}
	e.start()
	evs := waitEvents(t, e.store, "busy", n)
	if len(evs) != n {
		t.Errorf("%d events from %d acknowledged statuses", len(evs), n)
	}
}
