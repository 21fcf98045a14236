package agent

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/wire"
)

// testAgent is an Agent running in the test until cleanup.
type testAgent struct {
	*Agent
	log    *logBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startAgent runs an agent against url with test defaults for every
// option left zero: id dev-1, a fresh state folder, a 200ms heartbeat,
// the fleet's enrollment token.
func startAgent(t *testing.T, url string, opts Options) *testAgent {
	t.Helper()
	opts.Server = url
	if opts.EnrollToken == "" {
		opts.EnrollToken = testToken
	}
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	if opts.ID == "" {
		opts.ID = "dev-1"
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = 200 * time.Millisecond
	}
	opts.AgentVersion = "test"
	lb := &logBuffer{}
	opts.Logger = lb.logger()
	a, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, log: lb, cancel: cancel, done: make(chan error, 1)}
	go func() { ta.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		ta.stop(t)
		if t.Failed() {
			t.Logf("agent log:\n%s", lb)
		}
	})
	return ta
}

// stop cancels Run and checks that it returns, promptly and without error.
func (ta *testAgent) stop(t *testing.T) {
	ta.once.Do(func() {
		ta.cancel()
		select {
		case err := <-ta.done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of its context ending")
		}
	})
}

// waitReady waits until the agent has reported its version n times.
func waitReady(t *testing.T, f *fleet, id string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s reports its version (%d)", id, n), func() (bool, string) {
		vs := f.versions(id)
		return len(vs) >= n, fmt.Sprint(vs)
	})
}

func TestReportsOnConnect(t *testing.T) {
	f := startFleet(t, -1)
	beats := make(chan wire.Heartbeat, 100)
	arrived := make(chan time.Time, 100)
	sub, err := f.nc.Subscribe(wire.HeartbeatSubject("dev-1"), func(m *nats.Msg) {
		hb, err := wire.Decode[wire.Heartbeat](m.Data)
		if err != nil {
			t.Errorf("invalid heartbeat: %v", err)
			return
		}
		beats <- hb
		arrived <- time.Now()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	startAgent(t, f.url(), Options{Heartbeat: 200 * time.Millisecond})

	waitFor(t, "hardware report", func() (bool, string) {
		hw := decodeAll[wire.HWReport](f, wire.HWReportSubject("dev-1"))
		return len(hw) > 0 && hw[0].Hardware.Hostname != "" && hw[0].Hardware.CPUCores > 0 && hw[0].AgentVersion == "test", fmt.Sprint(hw)
	})
	waitReady(t, f, "dev-1", 1)
	if v := f.versions("dev-1")[0]; v.Version != "" {
		t.Errorf("version reported on a new machine = %q, want empty", v.Version)
	}

	var last time.Time
	for i := int64(1); i <= 4; i++ {
		var hb wire.Heartbeat
		var at time.Time
		select {
		case hb = <-beats:
			at = <-arrived
		case <-time.After(5 * time.Second):
			t.Fatalf("heartbeat %d did not arrive", i)
		}
		if hb.IntervalMS != 200 || hb.Seq != i {
			t.Errorf("heartbeat %d = %+v, want interval 200ms and seq %d", i, hb, i)
		}
		if gap := at.Sub(last); i > 1 && (gap < 100*time.Millisecond || gap > 2*time.Second) {
			t.Errorf("heartbeat %d came %s after the one before, want about 200ms", i, gap)
		}
		last = at
	}
}

func TestReportsAgainAfterReconnect(t *testing.T) {
	f := startFleet(t, -1)
	startAgent(t, f.url(), Options{})
	waitReady(t, f, "dev-1", 1)
	before := len(f.versions("dev-1"))
	f.restart() // same port, same JetStream store
	waitReady(t, f, "dev-1", before+1)
	waitFor(t, "a hardware report after the reconnect", func() (bool, string) {
		hw := decodeAll[wire.HWReport](f, wire.HWReportSubject("dev-1"))
		return len(hw) >= 2, fmt.Sprint(len(hw))
	})
}

func TestStartsBeforeServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ta := startAgent(t, fmt.Sprintf("nats://127.0.0.1:%d", port), Options{})
	waitFor(t, "the agent trying to enroll", func() (bool, string) {
		return ta.log.contains("not enrolled yet"), ""
	})
	f := startFleet(t, port)
	waitReady(t, f, "dev-1", 1)
}
