package web

import (
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/presence"
)

// followSeen merges presence's last-seen publications into the hub until
// it stops. Presence writes a device's LastSeen to the store only when
// the device turns alive or notAlive; it publishes every alive device's
// last heartbeat from memory instead (presence.SeenSubject), and the hub
// shows the later of the two. It works with presence in another process:
// all it needs is the store's connection.
func (h *hub) followSeen() {
	defer h.wg.Done()
	sub, err := presence.FollowSeen(h.store.JetStream().Conn(), h.log, nil, h.applySeen)
	if err != nil {
		h.log.Warn("last-seen times from presence not followed: the stored ones are shown", "err", err)
		return
	}
	<-h.ctx.Done()
	_ = sub.Unsubscribe()
}

// applySeen takes one last-seen publication.
func (h *hub) applySeen(seen map[string]time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen == nil {
		h.seen = map[string]time.Time{}
	}
	for id, at := range seen {
		if !at.After(h.seen[id]) {
			continue
		}
		h.seen[id] = at
		d, ok := h.devices[id]
		if !ok || !at.After(d.LastSeen) {
			continue
		}
		d.LastSeen = at
		h.devices[id] = d
		h.list = nil
		for s := range h.subs {
			if s.topics&topicDevices != 0 && (s.device == "" || s.device == id) {
				s.seen = true
			}
		}
	}
}

// withSeenLocked is d with presence's last-seen time when it is later
// than the stored one. h.mu is held.
func (h *hub) withSeenLocked(d fleet.Device) fleet.Device {
	if at := h.seen[d.ID]; at.After(d.LastSeen) {
		d.LastSeen = at
	}
	return d
}

// withSeen is d, read from the store, with presence's last-seen time when
// it is later.
func (h *hub) withSeen(d fleet.Device) fleet.Device {
	h.ensure()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.withSeenLocked(d)
}
