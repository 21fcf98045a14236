package presence

import (
	"context"
	"fmt"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
)

// device is what presence knows of one device.
//
// Invariant: alive is the truth as presence sees it; recorded is Alive as
// last written to the store. They differ only until the next write
// succeeds, and a difference is what makes a write happen.
type device struct {
	interval time.Duration
	lastBeat time.Time // the last heartbeat; zero if none since start
	// checkFrom is when silence started to count for a device recorded
	// alive before start that has sent no heartbeat since.
	checkFrom time.Time
	alive     bool
	recorded  bool
	why       string // the detail of the last flip, for its event

	flushedBeat time.Time // lastBeat as last written
	flushedAt   time.Time // when it was written

	conn        string    // the device's latest connection, from broker events
	connectedAt time.Time // when the broker last reported it connecting
	closedAt    time.Time // when the broker reported it closed
	// lateClosed is a connection other than conn that the broker reported
	// closed, at lateClosedAt: an old one closing late, or, if the events
	// of conn were lost, the device's current one.
	lateClosed   string
	lateClosedAt time.Time
	reconnects   bool // a connect event came after closedAt
}

// silentSince is the time from which missing heartbeats count.
func (d *device) silentSince() time.Time {
	if d.lastBeat.After(d.checkFrom) {
		return d.lastBeat
	}
	return d.checkFrom
}

// apply takes one message from the NATS callbacks into the state.
func (s *Service) apply(ctx context.Context, in input) {
	d := s.devices[in.device]
	switch in.kind {
	case inHeartbeat:
		if d == nil {
			d = &device{}
			s.devices[in.device] = d
		}
		if !d.alive && !d.reconnects && in.at.Sub(d.closedAt) < closeGrace {
			// Sent by the closed connection before it closed, and
			// delivered after the broker said so.
			s.log.Debug("heartbeat from a closed connection", "device", in.device)
			return
		}
		d.lastBeat, d.interval = in.at, in.interval
		if !d.alive {
			d.alive, d.why = true, fmt.Sprintf("heartbeat every %s", in.interval)
			s.write(ctx, in.device, d, in.at)
		}
	case inConnect:
		if d == nil {
			d = &device{}
			s.devices[in.device] = d
		}
		d.conn, d.reconnects, d.connectedAt = in.conn, true, in.at
	case inSnapshot:
		s.snapshot(ctx, in)
	case inDisconnect:
		if d == nil {
			return
		}
		if d.conn != "" && d.conn != in.conn {
			// A connection the device already replaced, closed late (the
			// broker noticed a dead link after the agent reconnected).
			s.log.Debug("old connection closed", "device", in.device)
			d.lateClosed, d.lateClosedAt = in.conn, in.at
			return
		}
		if d.lastBeat.IsZero() && !d.alive && !d.recorded {
			// Never a device as far as presence knows (a service, a
			// tool): forget the connection.
			delete(s.devices, in.device)
			return
		}
		d.conn, d.closedAt, d.reconnects = "", in.at, false
		if d.alive {
			d.alive, d.why = false, "connection closed"
			if in.reason != "" {
				d.why += " (" + in.reason + ")"
			}
			s.write(ctx, in.device, d, in.at)
		}
	}
}

// snapshot takes the broker's list of open connections: every device
// connected has its connection known, and a device alive without one
// turns notAlive at once, unless it was heard of since the list was asked
// for (then the list is older than what presence knows).
func (s *Service) snapshot(ctx context.Context, in input) {
	for id, conn := range in.conns {
		d := s.devices[id]
		if d == nil {
			d = &device{}
			s.devices[id] = d
		}
		switch {
		case d.lateClosed == conn && d.lateClosedAt.After(in.at):
			// Listed open, then reported closed before the list came in.
			d.conn, d.closedAt, d.reconnects = "", d.lateClosedAt, false
			if d.alive {
				d.alive, d.why = false, "connection closed"
				s.write(ctx, id, d, time.Now())
			}
		case d.connectedAt.Before(in.at) && !d.closedAt.After(in.at):
			d.conn, d.reconnects = conn, true
		}
	}
	now := time.Now()
	for id, d := range s.devices {
		if _, ok := in.conns[id]; ok || d.lastBeat.After(in.at) || d.connectedAt.After(in.at) {
			continue
		}
		d.conn = ""
		if d.alive {
			d.alive, d.why = false, "no connection at the broker"
			s.write(ctx, id, d, now)
		}
	}
	s.log.Info("presence checked with the broker", "connected", len(in.conns))
}

// sweep turns silent devices notAlive, and writes what is due: flips a
// failed write left behind, and LastSeen every flushEvery.
func (s *Service) sweep(ctx context.Context, now time.Time) {
	for id, d := range s.devices {
		if d.alive && now.Sub(d.silentSince()) > missed*d.interval {
			d.alive, d.why = false, fmt.Sprintf("heartbeat missed %d×%s", missed, d.interval)
		}
		flush := d.alive && d.lastBeat.After(d.flushedBeat) && now.Sub(d.flushedAt) >= s.flushEvery
		if d.alive != d.recorded || flush {
			s.write(ctx, id, d, now)
		}
	}
}

// write brings the record of d up to date and, if Alive flipped in the
// record, appends the event that says so. Only Alive, LastSeen and
// HeartbeatMS are presence's to write; LastSeen only moves forward. After
// a failed write, nothing is written for a second: a store that does not
// answer should not stall the heartbeats behind it.
func (s *Service) write(ctx context.Context, id string, d *device, now time.Time) {
	if now.Before(s.pauseUntil) {
		return
	}
	alive, beat, ms := d.alive, d.lastBeat, d.interval.Milliseconds()
	var flipped bool
	_, err := s.store.UpdateDevice(ctx, id, func(r *fleet.Device) error {
		if !alive && !r.Alive && r.LastSeen.IsZero() {
			// No record (an operator deleted the device), or one that
			// says nothing presence could correct: none is made.
			return store.ErrUnchanged
		}
		flipped = r.Alive != alive
		changed := flipped
		r.Alive = alive
		if beat.After(r.LastSeen) {
			r.LastSeen, changed = beat, true
		}
		if !beat.IsZero() && r.HeartbeatMS != ms {
			r.HeartbeatMS, changed = ms, true
		}
		if !changed {
			return store.ErrUnchanged
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("write device", "device", id, "err", err)
			s.pauseUntil = now.Add(time.Second)
		}
		return
	}
	d.recorded, d.flushedBeat, d.flushedAt = alive, beat, now
	if !flipped {
		return
	}
	kind := fleet.EventDisconnected
	if alive {
		kind = fleet.EventConnected
	}
	s.log.Info(string(kind), "device", id, "detail", d.why)
	e := fleet.Event{Time: now.UTC(), Device: id, Event: kind, Detail: d.why}
	if err := s.store.AppendEvent(ctx, e, ""); err != nil && ctx.Err() == nil {
		s.log.Error("append event", "device", id, "event", kind, "err", err)
	}
}
