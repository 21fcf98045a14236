package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

// AppendEvent appends e to the history and returns once JetStream has it
// on disk. dedupID, when not empty, makes a repeat within ten minutes a
// no-op: a service that redelivers the message behind an event passes the
// same id and the event is kept once.
func (s *Store) AppendEvent(ctx context.Context, e fleet.Event, dedupID string) error {
	_, err := s.AppendEventOnce(ctx, e, dedupID)
	return err
}

// AppendEventOnce is AppendEvent that also says whether the event is new:
// false when dedupID marked it a repeat that JetStream kept only once.
func (s *Store) AppendEventOnce(ctx context.Context, e fleet.Event, dedupID string) (appended bool, err error) {
	if err := wire.ValidateID(e.Device); err != nil {
		return false, fmt.Errorf("append event: %w", err)
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	e.Seq = 0
	data, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("encode event: %w", err)
	}
	var opts []jetstream.PublishOpt
	if dedupID != "" {
		opts = append(opts, jetstream.WithMsgID(dedupID))
	}
	ack, err := s.js.Publish(ctx, historyPrefix+e.Device, data, opts...)
	if err != nil {
		return false, fmt.Errorf("append %s event for %s: %w", e.Event, e.Device, err)
	}
	return !ack.Duplicate, nil
}

// Events returns the matching events, newest first. A read that fails
// while a cluster elects a new stream leader is tried again, a few times
// over about two seconds, before the error is returned.
func (s *Store) Events(ctx context.Context, f fleet.EventFilter) ([]fleet.Event, error) {
	for attempt := 1; ; attempt++ {
		evs, err := s.events(ctx, f)
		if err == nil || attempt == 5 || ctx.Err() != nil || errors.Is(err, wire.ErrInvalidID) {
			return evs, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

func (s *Store) events(ctx context.Context, f fleet.EventFilter) ([]fleet.Event, error) {
	subject := historyPrefix + "*"
	if f.Device != "" {
		if err := wire.ValidateID(f.Device); err != nil {
			return nil, err
		}
		subject = historyPrefix + f.Device
	}
	cons, err := s.history.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	pending := info.NumPending
	var out []fleet.Event
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			pending = meta.NumPending
			var e fleet.Event
			if json.Unmarshal(m.Data(), &e) != nil || !f.Match(e) {
				continue
			}
			e.Seq = meta.Sequence.Stream
			out = append(out, e)
			if f.Limit > 0 && len(out) > 2*f.Limit {
				out = append(out[:0], out[len(out)-f.Limit:]...)
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		if got == 0 {
			break
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
