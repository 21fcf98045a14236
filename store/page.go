package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/retry"
	"github.com/thinfleet/thinfleet/wire"
)

// EventPage returns up to n matching events older than the event with
// stream sequence before (0: the newest), newest first, and whether older
// ones match too. The next page starts before the last event returned.
//
// It reads the stream backwards in growing windows of sequences, so a page
// near the newest end costs a page, not the whole history, and a filter
// that matches rarely still ends in a few reads. It is the one reader of
// the history: Events, the API and the pages all page through it. A read
// that fails while a cluster elects a new stream leader is tried again, a
// few times over about two seconds, before the error is returned.
func (s *Store) EventPage(ctx context.Context, f fleet.EventFilter, before uint64, n int) ([]fleet.Event, bool, error) {
	if n <= 0 {
		return nil, false, nil
	}
	var (
		evs  []fleet.Event
		more bool
	)
	err := retry.Do(ctx, historyRetry, func(int) error {
		var err error
		evs, more, err = s.eventPage(ctx, f, before, n)
		if errors.Is(err, wire.ErrInvalidID) {
			return retry.Final(err)
		}
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return evs, more, nil
}

// historyRetry paces the attempts of a history read: 0.2, 0.4, 0.6 and
// 0.8 s apart.
var historyRetry = retry.Backoff{Pause: 200 * time.Millisecond, Max: time.Second, Attempts: 5}

func (s *Store) eventPage(ctx context.Context, f fleet.EventFilter, before uint64, n int) ([]fleet.Event, bool, error) {
	subject := historyPrefix + "*"
	if f.Device != "" {
		if err := wire.ValidateID(f.Device); err != nil {
			return nil, false, err
		}
		subject = historyPrefix + f.Device
	}
	var opts []jetstream.StreamInfoOpt
	if f.Device != "" {
		opts = append(opts, jetstream.WithSubjectFilter(subject))
	}
	info, err := s.history.Info(ctx, opts...)
	if err != nil {
		return nil, false, fmt.Errorf("read history: %w", err)
	}
	first, end := info.State.FirstSeq, info.State.LastSeq
	if before != 0 && before <= end {
		end = before - 1
	}
	if info.State.Msgs == 0 || end < first || end == 0 {
		return nil, false, nil
	}
	var found []fleet.Event // newest first
	window := min(4*uint64(n), 1<<16)
	if f.Device != "" {
		// A consumer on one device's subject is handed only that
		// device's events, so a wide window costs what it holds: make
		// it wide enough, going by how many of the stream's events are
		// the device's, to hold the page at the first read.
		count := info.State.Subjects[subject]
		if count == 0 {
			return nil, false, nil
		}
		span := info.State.LastSeq - first + 1
		window = max(window, span/count*2*uint64(n))
	}
	for len(found) <= n {
		start := first
		if end >= first+window {
			start = end - window + 1
		}
		chunk, err := s.eventRange(ctx, subject, start, end, f)
		if err != nil {
			return nil, false, err
		}
		slices.Reverse(chunk)
		found = append(found, chunk...)
		if start == first {
			break
		}
		end = start - 1
		window = min(2*window, 1<<16)
	}
	if len(found) > n {
		return found[:n], true, nil
	}
	return found, false, nil
}

// eventRange returns the matching events with sequences from start to end,
// oldest first.
func (s *Store) eventRange(ctx context.Context, subject string, start, end uint64, f fleet.EventFilter) ([]fleet.Event, error) {
	cons, err := s.history.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
		// A page is read in well under a second; the server drops the
		// consumer soon after instead of keeping it five minutes.
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	pending := ci.NumPending
	var out []fleet.Event
	for pending > 0 {
		want := min(pending, end-start+1, 1000)
		batch, err := cons.Fetch(int(want), jetstream.FetchMaxWait(5*time.Second))
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
			if meta.Sequence.Stream > end {
				pending = 0
				continue
			}
			var e fleet.Event
			if json.Unmarshal(m.Data(), &e) != nil || !f.Match(e) {
				continue
			}
			e.Seq = meta.Sequence.Stream
			out = append(out, e)
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		if got == 0 {
			break
		}
	}
	return out, nil
}
