package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/wire"
)

// SeenSubject carries presence's last-seen publications (core NATS, in
// the application account; agents may neither read nor write it). Every
// SeenEvery, presence publishes the devices it heard from since the last
// publication, so a reader that merges them holds every alive device's
// last heartbeat within one heartbeat interval plus SeenEvery, without a
// store write per heartbeat.
const SeenSubject = "thinfleet.presence.seen"

// Seen is one last-seen publication: device id to the time of its latest
// heartbeat, in Unix milliseconds.
type Seen struct {
	Seen map[string]int64 `json:"seen"`
}

// seenChunk bounds the devices in one publication, far below the
// broker's largest message (64-character ids and their times are under
// 100 bytes each).
const seenChunk = 2000

// kindSeen names a dropped last-seen publication in the metrics.
const kindSeen = "presence.seen"

// publisher publishes the last-seen times of the devices heard from,
// every seenEvery, until ctx ends.
func (s *Service) publisher(ctx context.Context) {
	tick := time.NewTicker(s.seenEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.publishSeen()
	}
}

// publishSeen publishes, in chunks, the devices heard from since it last
// ran. A publication that fails is not tried again: the next heartbeat of
// each device is in the next one.
func (s *Service) publishSeen() {
	s.mu.Lock()
	if len(s.heard) == 0 {
		s.mu.Unlock()
		return
	}
	chunks := make([]Seen, 0, len(s.heard)/seenChunk+1)
	cur := Seen{Seen: map[string]int64{}}
	for id := range s.heard {
		if d := s.devices[id]; d != nil && !d.lastBeat.IsZero() {
			cur.Seen[id] = d.lastBeat.UnixMilli()
		}
		if len(cur.Seen) == seenChunk {
			chunks = append(chunks, cur)
			cur = Seen{Seen: map[string]int64{}}
		}
	}
	clear(s.heard)
	s.mu.Unlock()
	if len(cur.Seen) > 0 {
		chunks = append(chunks, cur)
	}
	for _, c := range chunks {
		data, err := json.Marshal(c)
		if err == nil {
			err = s.nc.Publish(SeenSubject, data)
		}
		if err != nil {
			s.log.Warn("publish last-seen times", "err", err)
			return
		}
	}
}

// FollowSeen subscribes nc to presence's last-seen publications and calls
// fn with each, in the subscription's goroutine, until the returned
// subscription is unsubscribed. A publication that does not decode, or
// an entry that names no device or no time, is dropped and counted in m
// (nil counts nothing).
func FollowSeen(nc *nats.Conn, log *slog.Logger, m *metrics.Metrics, fn func(map[string]time.Time)) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(SeenSubject, func(msg *nats.Msg) {
		var p Seen
		if err := json.Unmarshal(msg.Data, &p); err != nil {
			log.Warn("dropped last-seen publication", "err", err)
			m.Dropped(kindSeen, "bad_json")
			return
		}
		out := make(map[string]time.Time, len(p.Seen))
		for id, ms := range p.Seen {
			if wire.ValidateID(id) != nil || ms <= 0 {
				m.Dropped(kindSeen, "invalid")
				continue
			}
			out[id] = time.UnixMilli(ms)
		}
		fn(out)
	})
	if err != nil {
		return nil, fmt.Errorf("presence: follow last-seen times: %w", err)
	}
	return sub, nil
}
