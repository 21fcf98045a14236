package presence

import (
	"fmt"
	"time"

	"github.com/thinfleet/thinfleet/store"
)

// device is what presence knows of one device. Every field is guarded by
// Service.mu.
//
// Invariant: alive is the truth as presence sees it; recorded is Alive as
// last written to the store (recordedMS the interval). They differ only
// until the writer has written the device, and a difference is what puts
// it in Service.dirty.
type device struct {
	interval time.Duration
	lastBeat time.Time // the last heartbeat, when its callback ran; zero if none since start
	alive    bool
	recorded bool
	// recordedMS is HeartbeatMS as last written.
	recordedMS int64
	why        string    // the detail of the last flip, for its event
	flippedAt  time.Time // when alive last changed

	queued  bool      // in Service.dirty: a look at the flag, not the map, in every sweep
	writing bool      // a write of this device is in flight
	retryAt time.Time // after a failed write, not before
	// rec is the device's record as last stored, as far as presence knows
	// (its watch, its own writes): the writer changes it without reading
	// first. A zero rec (or one without data) makes the writer read.
	rec store.DeviceRecord

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

// needsWrite reports whether the store is behind d.
func (d *device) needsWrite() bool {
	return d.alive != d.recorded ||
		(d.alive && !d.lastBeat.IsZero() && d.interval.Milliseconds() != d.recordedMS)
}

// silentSince is the time from which missing heartbeats count.
func (s *Service) silentSince(d *device) time.Time {
	if d.lastBeat.After(s.resumedAt) {
		return d.lastBeat
	}
	return s.resumedAt
}

// flip sets d's alive to alive, for why, at at, and has the change
// written. Called with s.mu held.
func (s *Service) flip(id string, d *device, alive bool, why string, at time.Time) {
	if d.alive == alive {
		return
	}
	d.alive, d.why, d.flippedAt = alive, why, at
	s.markDirty(id, d)
}

// markDirty queues d for the writer unless it is already queued or being
// written (its write then looks again when it ends). Called with s.mu
// held.
func (s *Service) markDirty(id string, d *device) {
	if d.writing || !d.needsWrite() || time.Now().Before(d.retryAt) {
		return
	}
	if d.queued {
		return
	}
	d.queued = true
	s.dirty[id] = struct{}{}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// takeHeartbeat takes one heartbeat of id, which arrived at at.
func (s *Service) takeHeartbeat(id string, interval time.Duration, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[id]
	if d == nil {
		d = &device{}
		s.devices[id] = d
	}
	if !d.alive && !d.reconnects && at.Sub(d.closedAt) < closeGrace {
		// Sent by the closed connection before it closed, and delivered
		// after the broker said so.
		s.log.Debug("heartbeat from a closed connection", "device", id)
		return
	}
	changed := d.interval != interval
	d.lastBeat, d.interval = at, interval
	s.heard[id] = struct{}{}
	if !d.alive {
		s.flip(id, d, true, fmt.Sprintf("heartbeat every %s", interval), at)
	} else if changed {
		s.markDirty(id, d)
	}
}

// connected takes the broker's word that id opened connection conn.
func (s *Service) connected(id, conn string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[id]
	if d == nil {
		d = &device{}
		s.devices[id] = d
	}
	d.conn, d.reconnects, d.connectedAt = conn, true, at
}

// disconnected takes the broker's word that id's connection conn closed.
func (s *Service) disconnected(id, conn, reason string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[id]
	if d == nil {
		return
	}
	if d.conn != "" && d.conn != conn {
		// A connection the device already replaced, closed late (the
		// broker noticed a dead link after the agent reconnected).
		s.log.Debug("old connection closed", "device", id)
		d.lateClosed, d.lateClosedAt = conn, at
		return
	}
	if d.lastBeat.IsZero() && !d.alive && !d.recorded && !d.writing {
		// Never a device as far as presence knows (a service, a tool):
		// forget the connection.
		delete(s.devices, id)
		return
	}
	d.conn, d.closedAt, d.reconnects = "", at, false
	why := "connection closed"
	if reason != "" {
		why += " (" + reason + ")"
	}
	s.flip(id, d, false, why, at)
}

// snapshot takes the broker's list of open connections, asked for at
// asked: every device connected has its connection known, and a device
// alive without one turns notAlive at once, unless it was heard of since
// the list was asked for (then the list is older than what presence
// knows).
func (s *Service) snapshot(conns map[string]string, asked time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for id, conn := range conns {
		d := s.devices[id]
		if d == nil {
			d = &device{}
			s.devices[id] = d
		}
		switch {
		case d.lateClosed == conn && d.lateClosedAt.After(asked):
			// Listed open, then reported closed before the list came in.
			d.conn, d.closedAt, d.reconnects = "", d.lateClosedAt, false
			s.flip(id, d, false, "connection closed", now)
		case d.connectedAt.Before(asked) && !d.closedAt.After(asked):
			d.conn, d.reconnects = conn, true
		}
	}
	for id, d := range s.devices {
		if _, ok := conns[id]; ok || d.lastBeat.After(asked) || d.connectedAt.After(asked) {
			continue
		}
		d.conn = ""
		s.flip(id, d, false, "no connection at the broker", now)
	}
	s.log.Info("presence checked with the broker", "connected", len(conns))
}
