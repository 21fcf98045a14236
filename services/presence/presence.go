// Package presence knows which devices are alive. Every agent sends a
// heartbeat on agent.heartbeat.<id> that carries its interval; a device is
// alive from its first heartbeat and notAlive once three of its own
// intervals pass without one, or at once when the broker reports that its
// connection closed (the agent names its connection with its id).
//
// Heartbeats are not kept by JetStream, so presence tracks them in memory.
// It writes the device record only when Alive flips (with a "connected"
// or "disconnected" history event, and LastSeen as of the flip) or the
// announced interval changes: never once per heartbeat, nor periodically
// for every device. The last-seen time of an alive device is served from
// memory instead: presence publishes, every SeenEvery, the devices heard
// from since the last publication (seen.go), and the web layer merges them
// into what it shows. Memory is a cache: on start presence loads the
// records, then asks the broker for its open connections (and again after
// every reconnect to it, as the events sent while it was away are lost):
// a device recorded alive without a connection turns notAlive at once.
// It keeps watching the records (records.go), so that a flip is one
// conditional write of the record presence holds, not a read and a write,
// and a thousand connections closing at once cost a thousand writes.
// Without the broker's events, a device recorded alive has three
// intervals to prove it. A restart neither loses a device nor keeps a dead
// one.
//
// Taking a heartbeat never waits for the store. The NATS callbacks update
// the state under a mutex and return; store writes go through a writer
// (writer.go) with a bounded number in flight, retried until they land,
// and the history events of flips through a store.Recorder, which has
// many appends on their way at once and sends each again until it lands.
// The sweep that declares silent devices notAlive measures silence only up
// to a time presence has provably caught up with (sweep.go), so presence
// falling behind, or the store stalling, never makes a healthy device
// look dead.
package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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
	// Conn, in the application account, receives the heartbeats and
	// carries the last-seen publications; required.
	Conn *nats.Conn
	// SysConn, in the broker's system account, receives its connect and
	// disconnect events; nil leaves them out, and a closed connection is
	// noticed three heartbeat intervals later.
	SysConn *nats.Conn
	// Account is the broker account agents connect to (THINFLEET).
	Account string
	// SeenEvery is how often the last-seen times of the devices heard
	// from are published (DefaultSeenEvery).
	SeenEvery time.Duration
	// Writers bounds the store writes in flight (DefaultWriters).
	Writers int
	// Appends bounds the history appends on their way (DefaultAppends).
	Appends int
}

// Defaults for Options.
const (
	DefaultAccount   = "THINFLEET"
	DefaultSeenEvery = time.Second
	DefaultWriters   = 32
	DefaultAppends   = 256
	// closeWait bounds how long Run waits, at the end, for the history
	// appends still on their way.
	closeWait = 5 * time.Second
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
	metrics   *metrics.Metrics
	log       *slog.Logger
	store     *store.Store
	nc, sys   *nats.Conn
	account   string
	seenEvery time.Duration
	writers   int
	appends   int

	// limiter drops a device's heartbeats past what any interval allows,
	// before they reach the state, so a flood cannot delay others.
	limiter *ratelimit.Limiter
	// handled counts the heartbeat messages whose callback has returned,
	// for the sweep's catch-up mark.
	handled atomic.Uint64
	// wake tells the writer that a device needs writing.
	wake chan struct{}
	// recorder appends the flips' history events, started by Run.
	recorder *store.Recorder
	// appending counts the history events on their way.
	appending atomic.Int64

	mu sync.Mutex // guards the fields below
	// devices is the state; see device for its invariants.
	devices map[string]*device
	// dirty are the devices to write; a device is in it at most once,
	// and never while its write is in flight.
	dirty map[string]struct{}
	// heard are the devices heard from since the last publication of
	// last-seen times.
	heard map[string]struct{}
	// resumedAt is when presence last started listening again (start, a
	// reconnect): heartbeats sent before are lost, so silence counts from
	// then at the earliest.
	resumedAt time.Time
	// failures counts store writes failed in a row, for the backoff.
	failures int
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
	if opts.SeenEvery <= 0 {
		opts.SeenEvery = DefaultSeenEvery
	}
	if opts.Writers <= 0 {
		opts.Writers = DefaultWriters
	}
	if opts.Appends <= 0 {
		opts.Appends = DefaultAppends
	}
	return &Service{metrics: opts.Metrics,
		log: opts.Log, store: opts.Store, nc: opts.Conn, sys: opts.SysConn,
		account: opts.Account, seenEvery: opts.SeenEvery, writers: opts.Writers, appends: opts.Appends,
		wake:    make(chan struct{}, 1),
		devices: map[string]*device{}, dirty: map[string]struct{}{}, heard: map[string]struct{}{},
		limiter: ratelimit.New(heartbeatRate, int(2*heartbeatRate)),
	}, nil
}

// Run tracks presence until ctx ends. It first watches the device records
// until it has loaded them (retrying while the store does not answer),
// then subscribes and starts its goroutines: the writer, the sweep, the
// last-seen publisher and, with a system connection, the reconciler. It
// returns once ctx has ended, after unsubscribing and once those
// goroutines have returned (a write in flight ends with ctx) and the
// history appends on their way have landed, or closeWait has passed; NATS
// callbacks still running then return without effect. The error is only
// for a subscription that cannot be made.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var subs []*nats.Subscription
	gctx, cancel := context.WithCancel(ctx)
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
		cancel()
		wg.Wait()
		if s.recorder != nil {
			// After the writer: no event is appended any more.
			cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), closeWait)
			defer ccancel()
			s.recorder.Close(cctx)
		}
	}()
	goRun := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(gctx) }()
	}
	loaded := make(chan struct{})
	goRun(func(ctx context.Context) { s.watchRecords(ctx, time.Now(), loaded) })
	select {
	case <-loaded:
	case <-ctx.Done():
		return nil
	}
	s.recorder = s.store.NewRecorder(s.log, s.metrics, s.appends)
	goRun(s.writer) // before any flip, so none waits for it
	subs, hb, err := s.subscribe(gctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: the connection closed under it
		}
		return err
	}
	if s.sys != nil {
		goRun(s.reconciler)
	}
	goRun(func(ctx context.Context) { s.sweeper(ctx, hb) })
	goRun(s.publisher)
	<-ctx.Done()
	return nil
}

// clampInterval is a stored interval as a duration within the bounds an
// agent may announce.
func clampInterval(ms int64) time.Duration {
	if ms <= 0 {
		return defaultInterval
	}
	return min(max(time.Duration(ms)*time.Millisecond, wire.MinHeartbeat), wire.MaxHeartbeat)
}
