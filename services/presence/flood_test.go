package presence_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/services/intake"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/services/inventory"
	"github.com/thinfleet/thinfleet/services/presence"
	"github.com/thinfleet/thinfleet/wire"
)

// TestFloodDoesNotSlowOthers floods the broker from one agent, with
// heartbeats and with reports through JetStream, while a second agent
// heartbeats and reports its version as usual: the second agent stays
// alive throughout, its version report gets through, and the flood is
// dropped and counted.
func TestFloodDoesNotSlowOthers(t *testing.T) {
	e := setup(t)
	p, err := presence.New(presence.Options{Metrics: natstest.Metrics, Log: natstest.Logger(t), Store: e.store, Conn: e.srv.Conn("presence")})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, p.Run)
	inv, err := inventory.New(inventory.Options{Metrics: natstest.Metrics, Log: natstest.Logger(t), Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, inv.Run)
	in, err := intake.New(intake.Options{Metrics: natstest.Metrics, Log: natstest.Logger(t), Conn: e.srv.Conn("intake")})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, in.Run)

	droppedBefore := natstest.Dropped(t, string(wire.KindHeartbeat), "rate_limited") +
		natstest.Dropped(t, string(wire.KindHWReport), "rate_limited")

	// The well-behaved agent: a heartbeat every second, as the end-to-end tests use.
	good := e.srv.Conn("good")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			_ = good.Publish(wire.HeartbeatSubject("good"), []byte(`{"interval_ms":1000}`))
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	natstest.Eventually(t, 5*time.Second, func() error {
		d, err := natstest.Device(e.store, "good")
		if err == nil && !d.Alive {
			return errAlive
		}
		return err
	})

	// The flood: bounded in time and count, heartbeats on core NATS and
	// hardware reports through JetStream, as fast as the connection goes.
	bad := e.srv.Conn("bad", nats.CustomInboxPrefix(wire.AgentInboxPrefix("bad")))
	js, _ := jetstream.New(bad)
	floodEnd := time.Now().Add(3 * time.Second)
	hb := []byte(`{"interval_ms":100}`)
	report := []byte(`{"hardware":{"hostname":"flood"}}`)
	sent, reported := 0, false
	for i := 0; i < 300000 && time.Now().Before(floodEnd); i++ {
		_ = bad.Publish(wire.HeartbeatSubject("bad"), hb)
		if i%10 == 0 {
			_, _ = js.PublishAsync(wire.HWReportSubject("bad"), report)
		}
		sent++
		if i%2000 == 0 {
			// Mid-flood, the good agent reports a version; it must get
			// through, and it must stay alive all along.
			if i == 20000 {
				natstest.Publish(t, good, wire.VersionInstalledSubject("good"), []byte(`{"version":"2.0"}`))
				reported = true
			}
			if d, err := natstest.Device(e.store, "good"); err == nil && !d.Alive {
				t.Fatalf("good agent turned notAlive during the flood (after %d messages)", sent)
			}
		}
	}
	<-js.PublishAsyncComplete()
	if !reported {
		// A busy machine sent fewer than 20,000 in the flood's time.
		natstest.Publish(t, good, wire.VersionInstalledSubject("good"), []byte(`{"version":"2.0"}`))
	}
	t.Logf("flooded %d heartbeats and %d reports", sent, sent/10)

	natstest.Eventually(t, 10*time.Second, func() error {
		d, err := natstest.Device(e.store, "good")
		if err != nil {
			return err
		}
		if !d.Alive || d.Version != "2.0" {
			return fmt.Errorf("%w: alive %v, version %q", errVersion, d.Alive, d.Version)
		}
		return nil
	})
	dropped := natstest.Dropped(t, string(wire.KindHeartbeat), "rate_limited") +
		natstest.Dropped(t, string(wire.KindHWReport), "rate_limited") - droppedBefore
	if dropped < float64(sent)/2 {
		t.Errorf("dropped %v of %d flood messages as rate_limited, want most", dropped, sent)
	}
	for _, ev := range natstest.Events(t, e.store, "good") {
		if ev.Event == "disconnected" {
			t.Errorf("good agent has a disconnected event: %+v", ev)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

const (
	errAlive   = errString("good agent not alive yet")
	errVersion = errString("good agent not alive on 2.0 yet")
)
