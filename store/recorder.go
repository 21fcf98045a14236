package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/wire"
)

// Recorder appends events to the history without waiting for each one:
// up to a bound of appends are on their way at once (JetStream's
// asynchronous publish), so a service that records an event per device
// pays one storage round trip for many devices, not one each in turn.
//
// Nothing is lost: an append that fails or is not acknowledged in time is
// sent again, with the same message id, so JetStream keeps it once, until
// it is acknowledged or the Recorder is closed and its deadline has
// passed. Every event carries a message id (its dedup id, or a fresh one).
type Recorder struct {
	js      jetstream.JetStream
	log     *slog.Logger
	met     *metrics.Metrics
	slots   chan struct{} // one per append on its way
	pending chan *pendingAppend
	stop    chan struct{} // closed when Close's deadline passes
	done    chan struct{} // closed when the collector has returned

	mu       sync.Mutex
	closed   bool
	stopOnce sync.Once
}

type pendingAppend struct {
	subject, id string
	data        []byte
	future      jetstream.PubAckFuture
	err         error // of the first send, when there is no future
	done        func(appended bool, err error)
}

// ackWait is how long an append may wait for its acknowledgment before it
// is sent again.
const ackWait = 10 * time.Second

// NewRecorder returns a Recorder with at most inFlight appends on their
// way (256 when not positive), counting in met (nil counts nothing). Its
// goroutine ends with Close.
func (s *Store) NewRecorder(log *slog.Logger, met *metrics.Metrics, inFlight int) *Recorder {
	if inFlight <= 0 {
		inFlight = 256
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Recorder{
		js: s.js, log: log, met: met,
		slots:   make(chan struct{}, inFlight),
		pending: make(chan *pendingAppend, inFlight),
		stop:    make(chan struct{}), done: make(chan struct{}),
	}
	go r.collect()
	return r
}

// ErrRecorderClosed is passed to the done function of an append that the
// Recorder gave up at Close.
var ErrRecorderClosed = errors.New("history recorder closed before the append was acknowledged")

// Append sends e to the history and returns without waiting for
// JetStream, unless the bound of appends on their way is reached: then it
// waits for a free slot, or for ctx. done, when not nil, is called once,
// from another goroutine, with nil when JetStream has the event (or had it
// already: dedupID, when not empty, makes a repeat within ten minutes a
// no-op) or with an error when the event is invalid, ctx ended before it
// was sent, or the Recorder closed first.
func (r *Recorder) Append(ctx context.Context, e fleet.Event, dedupID string, done func(error)) {
	if done == nil {
		r.AppendOnce(ctx, e, dedupID, nil)
		return
	}
	r.AppendOnce(ctx, e, dedupID, func(_ bool, err error) { done(err) })
}

// AppendOnce is Append that also tells done whether the event is new:
// false when dedupID marked it a repeat that JetStream kept only once (or
// when err is not nil).
func (r *Recorder) AppendOnce(ctx context.Context, e fleet.Event, dedupID string, done func(appended bool, err error)) {
	if done == nil {
		done = func(bool, error) {}
	}
	if err := wire.ValidateID(e.Device); err != nil {
		done(false, fmt.Errorf("append event: %w", err))
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	e.Seq = 0
	data, err := json.Marshal(e)
	if err != nil {
		done(false, fmt.Errorf("encode event: %w", err))
		return
	}
	if dedupID == "" {
		dedupID = nuid.Next()
	}
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		done(false, ctx.Err())
		return
	case <-r.stop:
		done(false, ErrRecorderClosed)
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		<-r.slots
		done(false, ErrRecorderClosed)
		return
	}
	p := &pendingAppend{subject: historyPrefix + e.Device, id: dedupID, data: data, done: done}
	p.future, p.err = r.js.PublishAsync(p.subject, p.data, jetstream.WithMsgID(p.id))
	r.met.HistoryAppendsPending(1)
	r.pending <- p // never blocks: it has as many places as there are slots
	r.mu.Unlock()
}

// collect waits for each append's acknowledgment in the order they were
// sent (the order JetStream answers in), sending again what fails.
func (r *Recorder) collect() {
	defer close(r.done)
	timer := time.NewTimer(ackWait)
	defer timer.Stop()
	for p := range r.pending {
		err := p.err
		for attempt := 1; ; attempt++ {
			var ack *jetstream.PubAck
			if err == nil {
				timer.Reset(ackWait)
				select {
				case ack = <-p.future.Ok():
				case err = <-p.future.Err():
				case <-timer.C:
					err = errors.New("no acknowledgment within " + ackWait.String())
				}
			}
			if err == nil {
				p.done(ack == nil || !ack.Duplicate, nil)
				break
			}
			r.met.HistoryAppendError()
			r.log.Warn("history append failed, sending again", "subject", p.subject, "id", p.id, "attempt", attempt, "err", err)
			select {
			case <-r.stop:
				r.met.HistoryAppendLost()
				r.log.Error("history append given up at shutdown", "subject", p.subject, "id", p.id, "err", err)
				p.done(false, fmt.Errorf("%w: %v", ErrRecorderClosed, err))
			case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, 5*time.Second)):
				p.future, err = r.js.PublishAsync(p.subject, p.data, jetstream.WithMsgID(p.id))
				continue
			}
			break
		}
		r.met.HistoryAppendsPending(-1)
		<-r.slots
	}
}

// Close stops taking appends and waits until those on their way are
// acknowledged, or until ctx ends: then what is left is logged, counted
// (thinfleet_history_appends_lost_total) and given up.
func (r *Recorder) Close(ctx context.Context) {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.pending)
	}
	r.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		r.stopOnce.Do(func() { close(r.stop) })
		<-r.done
	}
}
