package decision

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
)

// A failed install is tried again without an operator. The device record
// keeps the count (fleet.Retries), so a restart resumes it:
//
//   - a failed install of the device's planned release (fleet.Plan; not
//     an interruption) is counted
//     once, by its start time, and the next try planned: DefaultRetry's
//     First after the first failure, each pause twice the one before;
//   - when the next try is due, the release is offered again with Retry
//     set (the agent refuses a version that failed before otherwise), to
//     a device alive then, or when it is back;
//   - at the Tries-th failure the device is held back: nothing more of
//     that release is offered to it, and the dashboard says so, until an
//     operator offers it again (which clears the count) or another
//     release becomes the target (a new count).
//
// The counting writes the device record (compare-and-set, so it never
// undoes another service's write); the retries are timed here, from the
// Next the records hold.

// retrier holds the work of runRetries: devices whose failure to count,
// and the retries to time.
type retrier struct {
	mu      sync.Mutex
	pending map[string]bool // devices to count a failure of
	due     dueHeap
	wake    chan struct{}
}

func newRetrier() retrier {
	return retrier{pending: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// count asks for the failed installs of devices ids to be counted.
func (r *retrier) count(ids ...string) {
	if len(ids) == 0 {
		return
	}
	r.mu.Lock()
	for _, id := range ids {
		r.pending[id] = true
	}
	r.mu.Unlock()
	r.poke()
}

// at times a retry of device id at t.
func (r *retrier) at(id string, t time.Time) {
	r.mu.Lock()
	heap.Push(&r.due, dueRetry{at: t, id: id})
	r.mu.Unlock()
	r.poke()
}

func (r *retrier) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take returns the devices to count, the retries due at now, and when the
// next one is due (zero when none is).
func (r *retrier) take(now time.Time) (count []string, due []dueRetry, next time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.pending {
		count = append(count, id)
	}
	clear(r.pending)
	for r.due.Len() > 0 && !r.due[0].at.After(now) {
		due = append(due, heap.Pop(&r.due).(dueRetry))
	}
	if r.due.Len() > 0 {
		next = r.due[0].at
	}
	return count, due, next
}

// runRetries counts failed installs and offers the retries that are due,
// until ctx ends.
func (s *Service) runRetries(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		count, due, next := s.retries.take(time.Now())
		for _, id := range count {
			s.countFailure(ctx, id)
		}
		for _, d := range due {
			s.retryDue(ctx, d)
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-s.retries.wake:
		case <-timer.C:
		}
	}
}

// countFailure counts device id's failed install of its planned release
// in its record and plans the next try, or holds it back.
func (s *Service) countFailure(ctx context.Context, id string) {
	current, ok := s.device(id)
	if !ok {
		return
	}
	target := s.plan(current).Release
	if target.Version == "" {
		return
	}
	p := s.retry
	wrote := false
	d, err := s.store.UpdateDevice(ctx, id, func(d *fleet.Device) error {
		// Written only if the record is there and still shows an
		// uncounted failure: a deleted device stays deleted.
		wrote = d.CountFailure(target, p.Tries, p.First, p.Last, time.Now())
		if !wrote {
			return store.ErrUnchanged
		}
		return nil
	})
	switch {
	case err != nil && ctx.Err() == nil:
		// The record keeps the failure uncounted: ask again later.
		s.log.Error("count failed install, will retry", "device", id, "err", err)
		time.AfterFunc(time.Second, func() { s.retries.count(id) })
		return
	case err != nil, !wrote:
		return
	}
	rs := d.Retries
	if !rs.HeldBack {
		s.log.Info("install failed, will try again", "device", id, "version", target.Version,
			"failures", rs.Failures, "next", rs.Next)
		return
	}
	s.metrics.HeldBack()
	reason := fmt.Sprintf("held back after %d failed installs of %s", rs.Failures, target.Version)
	s.log.Warn("device held back", "device", id, "version", target.Version, "failures", rs.Failures)
	dedup := fmt.Sprintf("held-back-%s-%s-%d", id, target.SHA256, rs.Counted.UnixNano())
	s.rec.Append(ctx, fleet.Event{Device: id, Event: fleet.EventHeldBack, Version: target.Version, Detail: reason}, dedup, func(err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("record held back", "device", id, "err", err)
		}
	})
}

// retryDue offers a device its planned release again when its retry is
// due, if its record still plans that retry and it is alive; a device
// that is not is offered the retry when it is back.
func (s *Service) retryDue(ctx context.Context, due dueRetry) {
	d, ok := s.device(due.id)
	if !ok || d.Retries == nil || !d.Retries.Next.Equal(due.at) || !d.Alive {
		return
	}
	t := s.plan(d)
	if !d.Retries.For(t.Release) {
		return
	}
	if !t.OK || time.Now().Before(t.NotBefore) {
		s.log.Debug("no retry", "device", d.ID, "version", t.Release.Version, "reason", t.Why)
		return
	}
	s.log.Info("trying a failed install again", "device", d.ID, "version", t.Release.Version, "try", d.Retries.Failures+1)
	s.offer(ctx, d, t, fmt.Sprintf("offered-%s-%s-retry-%d", d.ID, t.Release.SHA256, d.Retries.Failures))
}

// dueRetry is a retry of one device, timed.
type dueRetry struct {
	at time.Time
	id string
}

// dueHeap orders retries soonest first.
type dueHeap []dueRetry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueRetry)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
