package natstest

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/store"
)

// Run runs a service's Run until the returned stop is called or the test
// ends. The test fails if Run returns an error, returns before it is
// stopped, or does not return within ten seconds of being stopped.
func Run(t testing.TB, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			select {
			case err := <-done:
				t.Errorf("Run returned before it was stopped: %v", err)
				cancel()
				return
			default:
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return within 10s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Eventually is poll.Eventually, for the services' tests: it asks cond
// every 20 ms until it returns nil, and fails the test with cond's last
// error if that takes longer than timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	poll.Eventually(t, timeout, "", cond)
}

// Context returns a context that ends with the test.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// Logger returns a logger that writes to the test's log until the test
// ends and discards what comes later, so a straggling goroutine cannot
// fail a finished test.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// registry holds Metrics, which the services under test count in (their
// Options.Metrics); Counter and Dropped read it.
var registry = prometheus.NewRegistry()

// Metrics are the metrics the services of a test count in. A test reads
// the change of a value around what it does, so tests may share them.
var Metrics = metrics.New(registry)

// Counter returns the value of a counter or gauge of Metrics whose labels
// include labels; 0 when there is none.
func Counter(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// Dropped returns thinfleet_messages_dropped_total for kind and reason.
func Dropped(t testing.TB, kind, reason string) float64 {
	t.Helper()
	return Counter(t, "thinfleet_messages_dropped_total", map[string]string{"kind": kind, "reason": reason})
}

// Events returns the history events of device, oldest first.
func Events(t testing.TB, st *store.Store, device string) []fleet.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := st.Events(ctx, fleet.EventFilter{Device: device})
	if err != nil {
		t.Fatalf("events of %s: %v", device, err)
	}
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs
}

// Device returns the stored device id, or an error while there is none.
func Device(st *store.Store, id string) (fleet.Device, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := st.Device(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return d, errors.New("device " + id + " not stored yet")
	}
	return d, err
}
