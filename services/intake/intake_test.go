package intake_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/services/intake"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/services/inventory"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

type env struct {
	srv   *natstest.Server
	store *store.Store
}

func setup(t *testing.T, opts intake.Options) env {
	srv := natstest.Start(t, natstest.Options{})
	e := env{srv: srv, store: srv.Store()}
	opts.Log = natstest.Logger(t)
	opts.Conn = srv.Conn("intake")
	opts.Metrics = natstest.Metrics
	s, err := intake.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, s.Run)
	return e
}

// agent connects as device id does: its inbox under its own prefix.
func (e env) agent(id string) (*nats.Conn, jetstream.JetStream) {
	nc := e.srv.Conn(id, nats.CustomInboxPrefix(wire.AgentInboxPrefix(id)))
	js, _ := jetstream.New(nc)
	return nc, js
}

// stored returns the messages the agent stream holds for subject.
func (e env) stored(t *testing.T, subject string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := e.store.JetStream().Stream(ctx, store.AgentStream)
	if err != nil {
		t.Fatal(err)
	}
	stored := store.StoredSubject(subject)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(stored))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[stored]
}

func publish(js jetstream.JetStream, subject string, data []byte, opts ...jetstream.PublishOpt) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := js.Publish(ctx, subject, data, opts...)
	return err
}

// TestAcknowledgesOwnReports: an agent's JetStream publish on its own
// subject is stored and acknowledged, and a retry with the same message
// id is stored once.
func TestAcknowledgesOwnReports(t *testing.T) {
	e := setup(t, intake.Options{})
	_, js := e.agent("dev-1")
	for range 2 {
		if err := publish(js, wire.VersionInstalledSubject("dev-1"), []byte(`{"version":"1.0"}`), jetstream.WithMsgID("m1")); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if n := e.stored(t, wire.VersionInstalledSubject("dev-1")); n != 1 {
		t.Errorf("stored %d messages, want 1 (the retry is a duplicate)", n)
	}
}

// TestRefusesForeignReplies publishes reports whose reply subjects name
// other devices' subjects, a bucket's key, the JetStream API and another
// inbox: none is stored, nothing arrives there, and each is counted.
func TestRefusesForeignReplies(t *testing.T) {
	e := setup(t, intake.Options{})
	thief, _ := e.agent("dev-1")
	watch := e.srv.Conn("watch")
	landed, err := watch.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	watch.Flush()
	before := natstest.Dropped(t, string(wire.KindHWReport), "foreign_reply")
	replies := []string{
		wire.OfferSubject("dev-2"), wire.VersionInstalledSubject("dev-2"),
		"$KV." + store.CatalogBucket + ".target", "$JS.API.STREAM.PURGE." + store.AgentStream,
		wire.AgentInboxPrefix("dev-2") + ".x", wire.AgentInboxPrefix("dev-1"), wire.AgentInboxPrefix("dev-1") + "..x",
		wire.AgentInboxPrefix("dev-10") + ".x",
	}
	for _, r := range replies {
		if err := thief.PublishRequest(wire.HWReportSubject("dev-1"), r, []byte(`{"hardware":{}}`)); err != nil {
			t.Fatal(err)
		}
	}
	thief.Flush()
	natstest.Eventually(t, 5*time.Second, func() error {
		if got := natstest.Dropped(t, string(wire.KindHWReport), "foreign_reply") - before; got != float64(len(replies)) {
			return fmt.Errorf("%v refused as foreign_reply, want %d", got, len(replies))
		}
		return nil
	})
	if n := e.stored(t, wire.HWReportSubject("dev-1")); n != 0 {
		t.Errorf("stored %d reports with foreign replies", n)
	}
	for {
		m, err := landed.NextMsg(100 * time.Millisecond)
		if err != nil {
			break
		}
		for _, r := range replies {
			if m.Subject == r {
				t.Errorf("something was written on %s: %s", r, m.Data)
			}
		}
	}
}

// TestMessageIDsAreThePublishersOwn: a device publishing with another
// device's message id does not make the stream drop that device's report.
func TestMessageIDsAreThePublishersOwn(t *testing.T) {
	e := setup(t, intake.Options{})
	_, js1 := e.agent("dev-1")
	_, js2 := e.agent("dev-2")
	if err := publish(js1, wire.StatusSubject("dev-1"), []byte(`{}`), jetstream.WithMsgID("same")); err != nil {
		t.Fatal(err)
	}
	if err := publish(js2, wire.StatusSubject("dev-2"), []byte(`{}`), jetstream.WithMsgID("same")); err != nil {
		t.Fatal(err)
	}
	if n := e.stored(t, wire.StatusSubject("dev-2")); n != 1 {
		t.Errorf("dev-2's report with dev-1's message id: stored %d, want 1", n)
	}
	err := publish(js1, wire.StatusSubject("dev-1"), []byte(`{}`), jetstream.WithMsgID("not an id!"))
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != 400 {
		t.Errorf("a malformed message id: %v, want a 400 error", err)
	}
}

// TestPacesAtTheEdge: a device over its budget gets an error instead of
// an acknowledgement, so what it retries later is not lost and what was
// acknowledged is stored; another device is not held up.
func TestPacesAtTheEdge(t *testing.T) {
	e := setup(t, intake.Options{Rate: 1, Burst: 5})
	_, js := e.agent("dev-1")
	acked, refused := 0, 0
	for range 20 {
		err := publish(js, wire.StatusSubject("dev-1"), []byte(`{}`))
		var apiErr *jetstream.APIError
		switch {
		case err == nil:
			acked++
		case errors.As(err, &apiErr) && apiErr.Code == 429:
			refused++
		default:
			t.Fatalf("publish: %v", err)
		}
	}
	if refused == 0 || acked < 5 {
		t.Errorf("acked %d, refused %d of 20 at a budget of 5: want the excess refused", acked, refused)
	}
	if n := e.stored(t, wire.StatusSubject("dev-1")); n != uint64(acked) {
		t.Errorf("stored %d, acknowledged %d: every acknowledged message must be stored, and only those", n, acked)
	}
	_, other := e.agent("dev-2")
	if err := publish(other, wire.StatusSubject("dev-2"), []byte(`{}`)); err != nil {
		t.Errorf("another device, while dev-1 is over its budget: %v", err)
	}
}

// TestBurstCostsOthersNothing floods the intake with 50,000 reports from
// one device while another reports its version every 20 ms, each through
// the intake and the inventory to its device record: every one of the
// other device's reports is acknowledged and recorded, and the flood is
// refused and counted. The delay the other device sees is logged as
// MEASURED (BENCHMARKS.md), not asserted.
func TestBurstCostsOthersNothing(t *testing.T) {
	e := setup(t, intake.Options{})
	inv, err := inventory.New(inventory.Options{Metrics: natstest.Metrics, Log: natstest.Logger(t), Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, inv.Run)
	before := natstest.Dropped(t, string(wire.KindHWReport), "rate_limited")

	bad, _ := e.agent("bad")
	_, good := e.agent("good")
	flood := make(chan int, 1)
	go func() {
		n := 0
		for ; n < 50000; n++ {
			if bad.Publish(wire.HWReportSubject("bad"), []byte(`{"hardware":{"hostname":"flood"}}`)) != nil {
				break
			}
		}
		_ = bad.Flush()
		flood <- n
	}()
	var delays []time.Duration
	for i := 1; i <= 25; i++ {
		version := fmt.Sprintf("1.%d", i)
		start := time.Now()
		if err := publish(good, wire.VersionInstalledSubject("good"), []byte(`{"version":"`+version+`"}`)); err != nil {
			t.Fatalf("the other device's report %d: %v", i, err)
		}
		natstest.Eventually(t, 10*time.Second, func() error {
			d, err := natstest.Device(e.store, "good")
			if err == nil && d.Version != version {
				err = fmt.Errorf("version %q, want %q", d.Version, version)
			}
			return err
		})
		delays = append(delays, time.Since(start))
		time.Sleep(20 * time.Millisecond)
	}
	flooded := <-flood
	t.Logf("flooded %d reports", flooded)
	slices.Sort(delays)
	t.Logf("MEASURED: during a 50k-report burst from one device, another device's report to its record: median %s, max %s over %d reports",
		delays[len(delays)/2].Round(100*time.Microsecond), delays[len(delays)-1].Round(100*time.Microsecond), len(delays))
	// Of what the flood got out (all 50,000, unless the broker cut the
	// connection first), all but the burst and 20 a second are refused.
	if refused := natstest.Dropped(t, string(wire.KindHWReport), "rate_limited") - before; refused < float64(flooded)*0.8 {
		t.Errorf("%v of the flood refused as rate_limited, want nearly all of %d", refused, flooded)
	}
}
