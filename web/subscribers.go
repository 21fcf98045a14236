package web

// The live streams' side of the hub: who listens to what, and telling
// them.

// topic is a kind of change a live stream asks to hear about.
type topic uint8

const (
	topicDevices topic = 1 << iota
	topicCatalog
	topicHistory
	topicEnrollments
	topicGroups
	topicRollouts
)

// subscriber is one open live stream.
type subscriber struct {
	topics topic
	device string        // only this device's changes, when set
	ch     chan struct{} // cap 1: something changed since the last receive
	seen   bool          // a last-seen-only change waits (guarded by hub.mu)
}

func (h *hub) notify(t topic, device string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.notifyLocked(t, device)
}

func (h *hub) notifyLocked(t topic, device string) {
	h.seq++
	for s := range h.subs {
		if s.topics&t != 0 && (s.device == "" || device == "" || s.device == device) {
			signal(s)
		}
	}
}

func signal(s *subscriber) {
	select {
	case s.ch <- struct{}{}:
	default: // a change is already waiting; one refresh shows both
	}
}

// subscribe opens a stream of the changes on topics (of one device, when
// device is set). A page passes the sequence Begin gave it when it read
// what it shows: if anything changed since, the stream starts with a
// change, so nothing between the page's reads and its stream is lost.
func (h *hub) subscribe(t topic, device string, since uint64) *subscriber {
	h.ensure()
	s := &subscriber{topics: t, device: device, ch: make(chan struct{}, 1)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	if h.seq > since {
		signal(s)
	}
	h.mu.Unlock()
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}
