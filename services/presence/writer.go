package presence

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
)

// job is one device's write, as the state asked for it when it was taken.
type job struct {
	id    string
	alive bool
	beat  time.Time
	ms    int64
	why   string
	at    time.Time          // when alive flipped
	rec   store.DeviceRecord // the record as presence last knew it
}

// writer writes the dirty devices, at most s.writers at a time, until ctx
// ends; it returns once its writes in flight have.
//
// Writes of different devices go on side by side, so a thousand devices
// going away at once are a thousand writes in parallel batches, not in
// turn; a device has at most one write in flight, and what changed while
// it was in flight is written after it. A failed write is tried again
// after a backoff (the sweep queues it again), so no flip is lost.
func (s *Service) writer(ctx context.Context) {
	sem := make(chan struct{}, s.writers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		for _, j := range s.takeDirty() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s.write(ctx, j)
			}()
		}
	}
}

// takeDirty empties the dirty set into jobs, marking their devices as
// being written.
func (s *Service) takeDirty() []job {
	s.mu.Lock()
	defer s.mu.Unlock()
	jobs := make([]job, 0, len(s.dirty))
	for id := range s.dirty {
		delete(s.dirty, id)
		d := s.devices[id]
		if d == nil {
			continue
		}
		d.queued = false
		if d.writing || !d.needsWrite() {
			continue
		}
		jobs = append(jobs, job{
			id: id, alive: d.alive, beat: d.lastBeat, ms: d.interval.Milliseconds(),
			why: d.why, at: d.flippedAt, rec: d.rec,
		})
		d.writing = true
	}
	return jobs
}

// write brings the record of j's device up to date and, if Alive flipped
// in the record, appends the event that says so, without waiting for it
// (the recorder sends it again until it lands). Only Alive, LastSeen and
// HeartbeatMS are presence's to write; LastSeen only moves forward, and
// is written with each flip, so that a notAlive device's record says when
// it was last heard from. The write starts from the record presence holds
// and is conditional on its revision: when another service wrote the
// device meanwhile, the store reads it and applies the change again.
func (s *Service) write(ctx context.Context, j job) {
	var flipped bool
	_, rec, err := s.store.UpdateDeviceFrom(ctx, j.id, j.rec, func(r *fleet.Device) error {
		flipped = false
		if !j.alive && !r.Alive && r.LastSeen.IsZero() {
			// No record (an operator deleted the device), or one that
			// says nothing presence could correct: none is made.
			return store.ErrUnchanged
		}
		flipped = r.Alive != j.alive
		changed := flipped
		r.Alive = j.alive
		if j.beat.After(r.LastSeen) {
			r.LastSeen, changed = j.beat, true
		}
		if !j.beat.IsZero() && r.HeartbeatMS != j.ms {
			r.HeartbeatMS, changed = j.ms, true
		}
		if !changed {
			return store.ErrUnchanged
		}
		return nil
	})
	if err != nil {
		s.done(ctx, j, rec, fmt.Errorf("write device: %w", err))
		return
	}
	if flipped {
		kind := fleet.EventDisconnected
		if j.alive {
			kind = fleet.EventConnected
		}
		s.log.Info(string(kind), "device", j.id, "detail", j.why)
		s.appendEvent(ctx, fleet.Event{Time: j.at.UTC(), Device: j.id, Event: kind, Detail: j.why})
	}
	s.done(ctx, j, rec, nil)
}

// appendEvent hands e to the recorder. Its id makes a second send after
// an unknown outcome (a lost ack) append the event once.
func (s *Service) appendEvent(ctx context.Context, e fleet.Event) {
	dedup := fmt.Sprintf("presence:%s:%s:%d", e.Device, e.Event, e.Time.UnixNano())
	s.appending.Add(1)
	s.recorder.Append(ctx, e, dedup, func(err error) {
		defer s.appending.Add(-1)
		if err != nil {
			s.log.Error("presence history event not appended", "device", e.Device, "event", e.Event, "err", err)
		}
	})
}

// done records the outcome of j: the record as stored after it (zero if
// unknown), and the error, if any, after which the device waits for a
// backoff before its next write.
func (s *Service) done(ctx context.Context, j job, rec store.DeviceRecord, err error) {
	if err != nil && ctx.Err() == nil {
		s.log.Error("presence write, will retry", "device", j.id, "err", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[j.id]
	if d == nil {
		return
	}
	d.writing = false
	if rec.Revision > d.rec.Revision {
		d.rec = rec
	}
	if err != nil {
		s.failures++
		d.retryAt = time.Now().Add(min(retryBase<<min(s.failures-1, 5), retryMax))
		return // the sweep queues it again once retryAt has passed
	}
	d.recorded = j.alive
	if !j.beat.IsZero() {
		d.recordedMS = j.ms
	}
	s.failures = 0
	s.markDirty(j.id, d)
}

// Bounds of the writer's retries.
const (
	retryBase = 250 * time.Millisecond
	retryMax  = 5 * time.Second
)
