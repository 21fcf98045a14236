// Package presence knows which devices are alive. Every agent sends a
// heartbeat on agent.heartbeat.<id> that carries its interval; a device is
// alive from its first heartbeat and notAlive once three of its own
// intervals pass without one, or at once when the broker reports that its
// connection closed (the agent names its connection with its id).
//
// Heartbeats are not kept by JetStream, so presence tracks them in memory
// and writes the device record only when Alive flips (with a "connected"
// or "disconnected" history event) and, otherwise, LastSeen at most once
// every FlushEvery per device. Memory is a cache: on start presence loads
// the records, then asks the broker for its open connections (and again
// after every reconnect to it, as the events sent while it was away are
// lost): a device recorded alive without a connection turns notAlive at
// once. Without the broker's events, a device recorded alive has three
// intervals to prove it. A restart neither loses a device nor keeps a
// dead one.
//
// All state lives in one goroutine, Run's; NATS callbacks only parse and
// hand messages to it.
package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/ratelimit"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// Options configure the presence service.
type Options struct {
	Log *slog.Logger // slog.Default() when nil
	// Metrics count what the service refuses and does; nil counts nothing.
	Metrics *metrics.Metrics
	Store   *store.Store // required
	// Conn, in the application account, receives the heartbeats; required.
	Conn *nats.Conn
	// SysConn, in the broker's system account, receives its connect and
	// disconnect events; nil leaves them out, and a closed connection is
	// noticed three heartbeat intervals later.
	SysConn *nats.Conn
	// Account is the broker account agents connect to (THINFLEET).
	Account string
	// FlushEvery bounds how often LastSeen of an alive device is written
	// (15s).
	FlushEvery time.Duration
}

// Defaults for Options.
const (
	DefaultAccount    = "THINFLEET"
	DefaultFlushEvery = 15 * time.Second
	// sweepEvery is how often silence is checked; it bounds how late a
	// device is declared notAlive, beyond its three intervals.
	sweepEvery = 200 * time.Millisecond
	// missed is how many intervals without a heartbeat make a device
	// notAlive.
	missed = 3
	// defaultInterval is assumed for a record that holds none.
	defaultInterval = 5 * time.Second
	// closeGrace is how long after a disconnect event a heartbeat is
	// taken for one the closed connection sent before it closed, unless
	// the device connected again since.
	closeGrace = 500 * time.Millisecond
)

// Service tracks which devices are alive.
type Service struct {
	metrics    *metrics.Metrics
	log        *slog.Logger
	store      *store.Store
	nc, sys    *nats.Conn
	account    string
	flushEvery time.Duration

	in chan input // from NATS callbacks to Run's goroutine
	// limiter drops a device's heartbeats past what any interval allows,
	// before they reach Run's goroutine, so a flood cannot delay others.
	limiter *ratelimit.Limiter
	// The fields below belong to Run's goroutine.
	devices    map[string]*device
	pauseUntil time.Time // no store writes before, after a failed one
}

// heartbeatRate is the most heartbeats a second one device may send: one
// per wire.MinHeartbeat.
const heartbeatRate = float64(time.Second / wire.MinHeartbeat)

// New checks opts and returns a service ready to Run.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Conn == nil {
		return nil, errors.New("presence: Store and Conn are required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Account == "" {
		opts.Account = DefaultAccount
	}
	if strings.ContainsAny(opts.Account, ".*> \t\r\n") {
		return nil, fmt.Errorf("presence: account %q is not a NATS subject token", opts.Account)
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = DefaultFlushEvery
	}
	return &Service{metrics: opts.Metrics,
		log: opts.Log, store: opts.Store, nc: opts.Conn, sys: opts.SysConn,
		account: opts.Account, flushEvery: opts.FlushEvery,
		in: make(chan input, 1024), devices: map[string]*device{},
		limiter: ratelimit.New(heartbeatRate, int(2*heartbeatRate)),
	}, nil
}

// Run tracks presence until ctx ends. It first loads the device records
// (retrying while the store does not answer), then subscribes. It returns
// once ctx has ended, after unsubscribing; NATS callbacks still running
// then return without effect. The error is only for a subscription that
// cannot be made.
func (s *Service) Run(ctx context.Context) error {
	if !s.reconcile(ctx, time.Now()) {
		return nil
	}
	subs, err := s.subscribe(ctx)
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: the connection closed under it
		}
		return err
	}
	if s.sys != nil {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.reconciler(rctx) }()
		defer func() { cancel(); <-done }()
	}
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case in := <-s.in:
			s.apply(ctx, in)
		case now := <-tick.C:
			s.sweep(ctx, now)
		}
	}
}

// reconcile loads every record. A device recorded alive is assumed seen
// at start: it turns notAlive three intervals later unless heartbeats
// arrive. It reports false if ctx ended first.
func (s *Service) reconcile(ctx context.Context, start time.Time) bool {
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		devices, err := s.store.Devices(ctx)
		if err == nil {
			alive := 0
			for _, d := range devices {
				st := &device{interval: clampInterval(d.HeartbeatMS), alive: d.Alive, recorded: d.Alive}
				if d.Alive {
					st.checkFrom, st.flushedAt = start, start
					alive++
				}
				s.devices[d.ID] = st
			}
			s.log.Info("presence loaded", "devices", len(devices), "alive", alive)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.log.Error("load devices, will retry", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// clampInterval is a stored interval as a duration within the bounds an
// agent may announce.
func clampInterval(ms int64) time.Duration {
	if ms <= 0 {
		return defaultInterval
	}
	return min(max(time.Duration(ms)*time.Millisecond, wire.MinHeartbeat), wire.MaxHeartbeat)
}
