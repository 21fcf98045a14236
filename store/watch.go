package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/retry"
)

// Change is one value a watch delivers. Every watch delivers, in order,
// the values stored when it began (Initial set), then one Change with
// Loaded set and no value, then each later change. A watch of new values
// only (WatchEvents) has no initial values: its Loaded change says that
// it is in place.
type Change[T any] struct {
	// Key is the value's key in its bucket: a device or enrollment id, the
	// catalog's key; empty for a history event.
	Key string
	// Value is the value as written; zero when Deleted.
	Value   T
	Deleted bool
	// Revision is the value's (or the deletion's) revision in its
	// bucket; 0 for a history event.
	Revision uint64
	// Initial marks the values that were already stored when the watch
	// began.
	Initial bool
	// Loaded marks the one Change, with no value, that follows the
	// initial values: the caller has seen everything stored.
	Loaded bool
}

// Every Watch function below calls fn on the caller's goroutine, one
// Change at a time, until ctx ends (it then returns nil) or fn returns an
// error (returned as is). It returns only once fn has returned: after it
// returns, fn is not running and will not run again. If the watch breaks
// (the connection was lost), it returns an error; a caller that watches
// again (Rewatch) gets the stored values first, so it misses nothing. A
// value that does not decode is skipped.

// WatchDevices watches the devices bucket.
func (s *Store) WatchDevices(ctx context.Context, fn func(Change[fleet.Device]) error) error {
	w, err := s.devices.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch devices: %w", err)
	}
	return follow(ctx, w, "devices", fn)
}

// WatchEnrollments watches the enrollments bucket. A removed enrollment
// (the end of a deletion) is not delivered.
func (s *Store) WatchEnrollments(ctx context.Context, fn func(Change[fleet.Enrollment]) error) error {
	w, err := s.enrollments.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch enrollments: %w", err)
	}
	return follow(ctx, w, "enrollments", fn)
}

// WatchCatalog watches the catalog: the current one (Initial, unless
// none was ever written), then each new one.
func (s *Store) WatchCatalog(ctx context.Context, fn func(Change[fleet.Catalog]) error) error {
	w, err := s.catalog.Watch(ctx, catalogKey, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch catalog: %w", err)
	}
	return follow(ctx, w, "catalog", fn)
}

// WatchEvents watches the history for the events appended after the watch
// is in place (its Loaded change).
func (s *Store) WatchEvents(ctx context.Context, fn func(Change[fleet.Event]) error) error {
	cons, err := s.history.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("watch history: %w", err)
	}
	// The messages are pulled here, on the caller's goroutine, rather than
	// pushed to a callback on the client's: fn's last call then returns
	// before this function does.
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("watch history: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	if err := fn(Change[fleet.Event]{Loaded: true}); err != nil {
		return err
	}
	for {
		m, err := it.Next()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("watch history: %w", err)
		}
		var e fleet.Event
		if json.Unmarshal(m.Data(), &e) != nil {
			continue
		}
		if meta, err := m.Metadata(); err == nil {
			e.Seq = meta.Sequence.Stream
		}
		if err := fn(Change[fleet.Event]{Key: e.Device, Value: e}); err != nil {
			return err
		}
	}
}

// follow reads w's entries and hands each to fn as a Change: the initial
// values, the Loaded mark (the nil entry the watcher sends once they are
// all in), then the changes. It returns nil when ctx ends, fn's error as
// is, or an error naming what when the watcher closes on its own.
func follow[T any](ctx context.Context, w jetstream.KeyWatcher, what string, fn func(Change[T]) error) error {
	return followWith(ctx, w, what, func(e jetstream.KeyValueEntry, v *T) error {
		return json.Unmarshal(e.Value(), v)
	}, fn)
}

// followWith is follow with decode making each value of its entry.
func followWith[T any](ctx context.Context, w jetstream.KeyWatcher, what string, decode func(jetstream.KeyValueEntry, *T) error, fn func(Change[T]) error) error {
	defer w.Stop()
	initial := true
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case e, ok = <-w.Updates():
		}
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch %s: watcher closed", what)
		}
		c := Change[T]{Initial: initial}
		switch {
		case e == nil:
			initial = false
			c = Change[T]{Loaded: true}
		case e.Operation() != jetstream.KeyValuePut:
			c.Key, c.Deleted, c.Revision = e.Key(), true, e.Revision()
		default:
			c.Key, c.Revision = e.Key(), e.Revision()
			if decode(e, &c.Value) != nil {
				continue
			}
		}
		if err := fn(c); err != nil {
			return err
		}
	}
}

// load returns the values stored now, through watch: the initial values
// of a watch that ends at its Loaded mark.
func load[T any](ctx context.Context, watch func(context.Context, func(Change[T]) error) error) ([]T, error) {
	var out []T
	err := watch(ctx, func(c Change[T]) error {
		if c.Loaded {
			return errLoaded
		}
		if !c.Deleted {
			out = append(out, c.Value)
		}
		return nil
	})
	switch {
	case errors.Is(err, errLoaded):
		return out, nil
	case err != nil:
		return nil, err
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return out, nil
}

var errLoaded = errors.New("loaded")

// rewatchPause is how long Rewatch waits before watching again after a
// watch broke; reconnectPoll is how often it looks for a reconnection.
const (
	rewatchPause  = time.Second
	reconnectPoll = 100 * time.Millisecond
)

// Rewatch runs watch until ctx ends, and again each time it returns before
// then: a watch breaks when the connection is lost, and a fresh one starts
// with the stored values, so nothing is missed. After a break it logs,
// naming what, and pauses first.
//
// A watch is also started again, at once, when the store's connection
// comes back after it was lost: a broker that restarted has forgotten the
// watch's consumer, and the client would notice only after missing its
// heartbeats, seconds later, delivering nothing new meanwhile (an operator
// would see a dead device shown alive). It returns when ctx ends.
func (s *Store) Rewatch(ctx context.Context, log *slog.Logger, what string, watch func(context.Context) error) {
	for ctx.Err() == nil {
		reconnected, err := s.watchOnce(ctx, watch)
		switch {
		case ctx.Err() != nil:
			return
		case reconnected:
			log.Info("connection back, watching again", "watch", what)
			continue
		case err == nil:
			err = errors.New("watch returned")
		}
		log.Warn("watch ended, watching again", "watch", what, "err", err)
		if !retry.Sleep(ctx, rewatchPause) {
			return
		}
	}
}

// watchOnce runs watch until it returns, ending its context when the
// store's connection reconnects; it reports whether that is why it ended.
// The reconnection is polled from the connection's statistics: a
// nats.Conn has one reconnect handler, and it belongs to whoever made the
// connection.
func (s *Store) watchOnce(ctx context.Context, watch func(context.Context) error) (reconnected bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nc := s.js.Conn()
	start := nc.Stats().Reconnects
	var back atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(reconnectPoll)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				if nc.Stats().Reconnects != start {
					back.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	err = watch(wctx)
	cancel()
	<-done
	return back.Load() && ctx.Err() == nil, err
}
