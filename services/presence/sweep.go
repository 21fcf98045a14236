package presence

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Bounds of the sweep's catch-up check.
const (
	// flushWait bounds the round trip to the broker that starts it.
	flushWait = 2 * time.Second
	// catchUpWait bounds the wait for the heartbeats received before it
	// to be taken; a sweep that does not see them taken declares no one
	// late.
	catchUpWait = time.Second
)

// sweeper runs the sweep every sweepEvery until ctx ends.
func (s *Service) sweeper(ctx context.Context, hb *nats.Subscription) {
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	reconnects := s.nc.Stats().Reconnects
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		mark, caught := s.caughtUp(ctx, hb)
		if r := s.nc.Stats().Reconnects; r != reconnects {
			// Heartbeats sent while presence was away are lost: silence
			// counts from now.
			reconnects = r
			s.mu.Lock()
			s.resumedAt = time.Now()
			s.mu.Unlock()
			caught = false
		}
		s.sweep(mark, caught, time.Now())
	}
}

// caughtUp returns a time up to which every heartbeat that reached
// presence has been taken, and false if it cannot tell (the broker does
// not answer, or presence is too far behind to catch up soon).
//
// It sends a PING and waits for the PONG: by then the client has read
// every message the broker sent before, and counts it as pending on the
// heartbeat subscription until its callback returns. It then waits until
// the callbacks have handled those (or the queue is empty). A heartbeat's
// time is taken when its callback runs, so a device whose heartbeats were
// queued behind others is not late: its heartbeat is, at worst, stamped
// later than it arrived.
func (s *Service) caughtUp(ctx context.Context, hb *nats.Subscription) (time.Time, bool) {
	asked := time.Now()
	if err := s.nc.FlushTimeout(flushWait); err != nil {
		return asked, false
	}
	pending, _, err := hb.Pending()
	if err != nil {
		return asked, false
	}
	delivered, err := hb.Delivered()
	if err != nil {
		return asked, false
	}
	// delivered counts the message in a callback, pending counts it too
	// until the callback has returned: the target may be one too high,
	// which the empty queue below makes up for.
	target := uint64(delivered) + uint64(pending)
	deadline := time.Now().Add(catchUpWait)
	for s.handled.Load() < target {
		if p, _, err := hb.Pending(); err == nil && p == 0 {
			break // all in is handled
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return asked, false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return asked, true
}

// sweep turns notAlive the devices silent for three of their intervals
// as of mark (when caught), and queues the writes that are due again after
// a failure.
//
// It looks at every device five times a second, so the look is kept to a
// few comparisons: at 10,000 devices, a call of markDirty (a clock read,
// a map lookup) for each made the sweep presence's largest cost while
// the fleet heartbeated.
func (s *Service) sweep(mark time.Time, caught bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, d := range s.devices {
		if caught && d.alive && mark.Sub(s.silentSince(d)) > missed*d.interval {
			s.flip(id, d, false, fmt.Sprintf("heartbeat missed %d×%s", missed, d.interval), now)
		}
		if !d.writing && d.needsWrite() && !now.Before(d.retryAt) {
			s.markDirty(id, d)
		}
	}
}
