package web

import (
	"context"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
)

// hub is the web's live view of the fleet. It holds every device in
// memory, kept current by a watch of the devices bucket (the bucket stays
// the truth; the hub is a cache that a restart rebuilds), so a page of
// 10,000 devices is rendered without reading them all, and it tells the
// open live streams about each change they show.
//
// It holds every enrollment the same way, so a page shows who waits for
// approval and who is revoked without reading the bucket, every group,
// so a device's groups and channel are known without a read (groups.go),
// and every rollout, so the Rollouts pages and the API follow a rollout
// without reading it.
//
// It starts on first use. Its goroutines (the devices, catalog, history,
// enrollments, groups and rollouts watches and a ticker) run until Close,
// or until the store's connection is closed; a watch that breaks starts
// again after a pause.
type hub struct {
	store     *store.Store
	log       *slog.Logger
	seenEvery time.Duration

	start  sync.Once
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ready  chan struct{} // closed when every watch is in place

	mu      sync.Mutex
	waiting int    // watches not yet in place
	seq     uint64 // counts the changes passed on
	devices map[string]fleet.Device
	loading map[string]fleet.Device // a fresh watch's initial records
	list    []fleet.Device          // devices by id; nil when stale
	ids     []string                // the ids of devices, sorted; nil when one came or went
	subs    map[*subscriber]struct{}

	// catalog is the latest catalog the watch saw; nil until it is
	// loaded, or when loading it failed.
	catalog *fleet.Catalog

	enrollments copyOf[fleet.Enrollment] // by id
	groups      copyOf[fleet.Group]      // by name

	// seen are presence's last-seen times (seen.go), merged into devices.
	seen map[string]time.Time

	rollouts copyOf[fleet.Rollout] // newest first
}

// seenEvery is how often a change of nothing but a device's last-seen time
// is passed on. Presence publishes one every second for every alive
// device; at 10,000 devices, passing each on at once would refresh pages
// constantly. Every 2s, a page's "last seen" lags the device's last
// heartbeat by 3s at most (presence publishes every second), within the
// default 5s heartbeat interval, for one page render (about 4ms at
// 10,000 devices) every 2s per open page.
const seenEvery = 2 * time.Second

// readyWait bounds how long a page waits for the first load before it
// reads the store directly.
const readyWait = 10 * time.Second

func newHub(store *store.Store, log *slog.Logger) *hub {
	ctx, cancel := context.WithCancel(context.Background())
	return &hub{
		store: store, log: log, seenEvery: seenEvery, ctx: ctx, cancel: cancel,
		ready: make(chan struct{}), subs: map[*subscriber]struct{}{}, waiting: 6,
		enrollments: copyOf[fleet.Enrollment]{order: byEnrollID},
		groups:      copyOf[fleet.Group]{order: byGroupName},
		rollouts:    copyOf[fleet.Rollout]{order: newestRolloutFirst},
	}
}

func (h *hub) ensure() {
	h.start.Do(func() {
		if h.ctx.Err() != nil {
			return
		}
		h.wg.Add(8)
		go h.followSeen()
		go h.keep("devices", func(ctx context.Context) error { return h.store.WatchDevices(ctx, h.apply) })
		go h.keep("enrollments", func(ctx context.Context) error { return h.store.WatchEnrollments(ctx, h.applyEnrollment) })
		go h.keep("groups", func(ctx context.Context) error { return h.store.WatchGroups(ctx, h.applyGroup) })
		go h.keep("rollouts", func(ctx context.Context) error { return h.store.WatchRollouts(ctx, h.applyRollout) })
		var catalogOnce, historyOnce sync.Once
		go h.keep("catalog", func(ctx context.Context) error {
			var initial *fleet.Catalog
			return h.store.WatchCatalog(ctx, func(c store.Change[fleet.Catalog]) error {
				switch {
				case c.Initial:
					initial = &c.Value
				case c.Loaded:
					if initial == nil {
						initial = &fleet.Catalog{} // none stored yet
					}
					h.setCatalog(initial)
					h.watching(&catalogOnce, topicCatalog)
				default:
					h.setCatalog(&c.Value)
					h.notify(topicCatalog, "")
				}
				return nil
			})
		})
		go h.keep("history", func(ctx context.Context) error {
			return h.store.WatchEvents(ctx, func(c store.Change[fleet.Event]) error {
				if c.Loaded {
					h.watching(&historyOnce, topicHistory)
				} else {
					h.notify(topicHistory, c.Value.Device)
				}
				return nil
			})
		})
		go h.tick()
	})
}

// Close stops the hub and ends every live stream.
func (h *hub) Close() {
	h.cancel()
	h.wg.Wait()
}

// keep runs watch until the hub stops, starting it again when it breaks.
// When the store's connection is closed for good, it stops the hub.
func (h *hub) keep(name string, watch func(context.Context) error) {
	defer h.wg.Done()
	h.store.Rewatch(h.ctx, h.log, "live "+name, func(ctx context.Context) error {
		err := watch(ctx)
		if ctx.Err() == nil && h.store.JetStream().Conn().IsClosed() {
			h.log.Info("live view stops: the connection is closed", "watch", name)
			h.cancel()
		}
		return err
	})
}

func (h *hub) tick() {
	defer h.wg.Done()
	t := time.NewTicker(h.seenEvery)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		for s := range h.subs {
			if s.seen {
				s.seen = false
				signal(s)
			}
		}
		h.mu.Unlock()
	}
}

// apply takes one change of the devices watch.
func (h *hub) apply(u store.Change[fleet.Device]) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := u.Key
	switch {
	case u.Initial:
		if h.loading == nil {
			h.loading = map[string]fleet.Device{}
		}
		h.loading[id] = h.withSeenLocked(u.Value)
		return nil
	case u.Loaded:
		first := h.devices == nil
		h.devices, h.loading, h.list, h.ids = h.loading, nil, nil, nil
		if h.devices == nil {
			h.devices = map[string]fleet.Device{}
		}
		if first {
			h.startedLocked()
		} else {
			h.notifyLocked(topicDevices, "") // a watch started again: anything may have changed
		}
		return nil
	case u.Deleted:
		delete(h.devices, id)
		h.ids = nil
		delete(h.seen, id)
	default:
		u.Value = h.withSeenLocked(u.Value)
		old, had := h.devices[id]
		h.devices[id] = u.Value
		if !had {
			h.ids = nil
		}
		if had && onlySeen(old, u.Value) {
			h.list = nil
			for s := range h.subs {
				if s.topics&topicDevices != 0 && (s.device == "" || s.device == id) {
					s.seen = true
				}
			}
			return nil
		}
	}
	h.list = nil
	h.notifyLocked(topicDevices, id)
	return nil
}

// watching is called when a watch of topic t is in place. The first time,
// it counts towards the hub being ready; after a watch broke and started
// again, the streams of t are told, since anything may have changed.
func (h *hub) watching(once *sync.Once, t topic) {
	first := false
	once.Do(func() { first = true; h.started() })
	if !first {
		h.notify(t, "")
	}
}

// started counts a watch in place; the hub is ready with all six.
func (h *hub) started() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.startedLocked()
}

func (h *hub) startedLocked() {
	if h.waiting--; h.waiting == 0 {
		close(h.ready)
	}
}

// onlySeen reports whether two records of a device differ in nothing but
// the last-seen time.
func onlySeen(a, b fleet.Device) bool {
	a.LastSeen = b.LastSeen
	return reflect.DeepEqual(a, b)
}

// Begin is called by a page before it reads what it shows. It starts the
// hub, waits (within bounds) until its watches are in place, and returns
// the sequence of changes so far, for the page's stream.
func (h *hub) Begin(ctx context.Context) uint64 {
	h.ensure()
	h.wait(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq
}

// wait waits until the watches are in place, the hub stops, ctx ends or
// readyWait passes; it reports whether the watches are in place.
func (h *hub) wait(ctx context.Context) bool {
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-h.ready:
		return true
	case <-ctx.Done():
	case <-h.ctx.Done():
	case <-t.C:
	}
	return false
}

// Devices returns every device, sorted by id. The slice is shared: the
// caller must not change it.
func (h *hub) Devices(ctx context.Context) ([]fleet.Device, error) {
	h.ensure()
	if !h.wait(ctx) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return h.storeDevices(ctx)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.list == nil {
		// A device's change leaves the order as it was: sort only when
		// one came or went.
		if h.ids == nil {
			h.ids = make([]string, 0, len(h.devices))
			for id := range h.devices {
				h.ids = append(h.ids, id)
			}
			slices.Sort(h.ids)
		}
		h.list = make([]fleet.Device, len(h.ids))
		for i, id := range h.ids {
			h.list[i] = h.devices[id]
		}
	}
	return h.list, nil
}

// tally counts the devices for the metrics, under the lock, without a
// copy of the list; from the store, as Devices does, only when the hub is
// not ready in time.
func (h *hub) tally(ctx context.Context) (fleetTally, error) {
	t := fleetTally{versions: map[string]int{}}
	h.ensure()
	if !h.wait(ctx) {
		if err := ctx.Err(); err != nil {
			return t, err
		}
		ds, err := h.storeDevices(ctx)
		if err != nil {
			return t, err
		}
		for i := range ds {
			t.add(&ds[i])
		}
		return t, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range h.devices {
		t.add(&d)
	}
	return t, nil
}

func (h *hub) storeDevices(ctx context.Context) ([]fleet.Device, error) {
	ds, err := h.store.Devices(ctx)
	slices.SortFunc(ds, func(a, b fleet.Device) int { return strings.Compare(a.ID, b.ID) })
	return ds, err
}
