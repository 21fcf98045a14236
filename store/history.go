package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
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

// Events returns the newest f.Limit matching events (every one when
// Limit is 0), newest first. It is EventPage's first page: it reads the
// history backwards from its newest event, so the newest few cost a few
// reads however long the history is.
func (s *Store) Events(ctx context.Context, f fleet.EventFilter) ([]fleet.Event, error) {
	n := f.Limit
	if n <= 0 {
		n = math.MaxInt32
	}
	evs, _, err := s.EventPage(ctx, f, 0, n)
	return evs, err
}
