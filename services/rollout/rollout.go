// Package rollout moves rollouts through their waves. For every running
// or paused rollout it fills in the release's sha256 once the release is
// in the catalog, assigns the devices in scope to waves, counts each
// wave's devices, opens the next wave when the open one has succeeded
// for its soak time, completes the rollout after the last wave, and
// pauses it when a wave's failures pass its error threshold, with the
// reason in one line.
//
// The service offers nothing itself: the decision service offers each
// device what fleet.Plan says, which reads the members and the open wave
// that this service writes in the rollout's record. A rollout's state
// lives only in the store (package store), so a restart of either
// service resumes exactly where it stood: the same members, the same
// wave.
//
// The service decides from memory: it keeps a copy of the devices, the
// groups, the catalog and the rollouts from watches of their buckets,
// looks at every rollout every Interval, and writes a rollout's record
// (compare-and-set, so that an operator's change in between is never
// undone) only when something changed: at most once an Interval.
package rollout

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
)

// Options configure the rollout service.
type Options struct {
	Log   *slog.Logger // slog.Default() when nil
	Store *store.Store // required
	// Now is the clock of the waves' soak times and of the records'
	// times (time.Now when nil).
	Now func() time.Time
	// Interval is how often the rollouts are looked at, and so the least
	// time between two writes of one rollout (1 s).
	Interval time.Duration
}

// Service moves the rollouts.
type Service struct {
	log      *slog.Logger
	store    *store.Store
	now      func() time.Time
	interval time.Duration

	// mu guards the copies below, kept by the watches.
	mu       sync.Mutex
	devices  map[string]fleet.Device
	groups   map[string]fleet.Group
	rollouts map[string]fleet.Rollout
	catalog  fleet.Catalog
}

// New checks opts and returns a service ready to Run.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("rollout: Store is required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	return &Service{
		log: opts.Log, store: opts.Store, now: opts.Now, interval: opts.Interval,
		devices: map[string]fleet.Device{}, groups: map[string]fleet.Group{}, rollouts: map[string]fleet.Rollout{},
	}, nil
}

// Run moves the rollouts until ctx ends. It first reads the devices,
// groups, catalog and rollouts whole (a rollout's members are chosen
// from every device in scope, never from part of them), then looks at
// the rollouts every Interval. It returns nil once ctx has ended and its
// goroutines (the four watches and the loop) have returned. Run is
// called once.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	loaded := make([]chan struct{}, 4)
	for i := range loaded {
		loaded[i] = make(chan struct{})
	}
	g.Go(func() error {
		watch(ctx, s, "devices", s.store.WatchDevices, loaded[0], func(m map[string]fleet.Device) { s.devices = m }, trim)
		return nil
	})
	g.Go(func() error {
		watch(ctx, s, "groups", s.store.WatchGroups, loaded[1], func(m map[string]fleet.Group) { s.groups = m }, nil)
		return nil
	})
	g.Go(func() error {
		watch(ctx, s, "rollouts", s.store.WatchRollouts, loaded[2], func(m map[string]fleet.Rollout) { s.rollouts = m }, nil)
		return nil
	})
	g.Go(func() error {
		watch(ctx, s, "catalog", s.store.WatchCatalog, loaded[3], func(m map[string]fleet.Catalog) {
			for _, c := range m {
				s.catalog = c
			}
		}, nil)
		return nil
	})
	g.Go(func() error {
		for _, l := range loaded {
			select {
			case <-l:
			case <-ctx.Done():
				return nil
			}
		}
		s.log.Info("rollouts loaded")
		s.loop(ctx)
		return nil
	})
	return g.Wait()
}

// watch keeps a copy of one bucket by key until ctx ends, handed to set
// under s.mu once the whole bucket is read (loaded is closed then) and
// changed in place, under s.mu, by each later change. keep, when set,
// trims what is kept.
func watch[T any](ctx context.Context, s *Service, what string, w func(context.Context, func(store.Change[T]) error) error,
	loaded chan struct{}, set func(map[string]T), keep func(T) T) {
	var once sync.Once
	s.store.Rewatch(ctx, s.log, what, func(ctx context.Context) error {
		fresh := map[string]T{}
		live := false
		return w(ctx, func(c store.Change[T]) error {
			if live {
				s.mu.Lock()
				defer s.mu.Unlock()
			}
			switch {
			case c.Loaded:
				s.mu.Lock()
				set(fresh)
				s.mu.Unlock()
				live = true
				once.Do(func() { close(loaded) })
			case c.Deleted:
				delete(fresh, c.Key)
			case keep != nil:
				fresh[c.Key] = keep(c.Value)
			default:
				fresh[c.Key] = c.Value
			}
			if live && !c.Loaded {
				set(fresh) // the catalog's copy is its one value
			}
			return nil
		})
	})
}

// trim keeps of d what a rollout reads.
func trim(d fleet.Device) fleet.Device {
	t := fleet.Device{ID: d.ID, Alive: d.Alive, Version: d.Version, Retries: d.Retries, Labels: d.Labels, Tags: d.Tags, Pin: d.Pin}
	t.Hardware.OS, t.Hardware.Arch = d.Hardware.OS, d.Hardware.Arch
	if d.Install != nil {
		in := *d.Install
		in.Output = ""
		t.Install = &in
	}
	return t
}

// loop looks at every running or paused rollout every Interval until ctx
// ends.
func (s *Service) loop(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// step moves each rollout that has something to change, and writes it.
func (s *Service) step(ctx context.Context) {
	now := s.now().UTC()
	s.mu.Lock()
	v := view{devices: s.devices, groups: slices.Collect(maps.Values(s.groups)), catalog: s.catalog}
	var due []fleet.Rollout
	for _, r := range s.rollouts {
		if r.State == fleet.RolloutRunning || r.State == fleet.RolloutPaused {
			due = append(due, r)
		}
	}
	// Decided on the copy under s.mu: the devices map is changed in
	// place by its watch.
	var changed []string
	for _, r := range due {
		r = clone(r)
		if advance(&r, v, now) {
			changed = append(changed, r.ID)
		}
	}
	s.mu.Unlock()
	for _, id := range changed {
		s.write(ctx, id, now)
	}
}

// write moves rollout id as its stored record stands, and writes it when
// that changed it.
func (s *Service) write(ctx context.Context, id string, now time.Time) {
	var before fleet.Rollout
	r, err := s.store.UpdateRollout(ctx, id, func(r *fleet.Rollout) error {
		before = clone(*r)
		s.mu.Lock()
		v := view{devices: s.devices, groups: slices.Collect(maps.Values(s.groups)), catalog: s.catalog}
		changed := advance(r, v, now)
		s.mu.Unlock()
		if !changed {
			return store.ErrUnchanged
		}
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound), ctx.Err() != nil:
		return
	case err != nil:
		s.log.Error("write rollout, will try again", "rollout", id, "err", err)
		return
	}
	s.mu.Lock()
	if cur, ok := s.rollouts[id]; ok && !cur.Updated.After(r.Updated) {
		s.rollouts[id] = r // seen at once, before the watch brings it
	}
	s.mu.Unlock()
	switch {
	case before.State != r.State:
		s.log.Warn("rollout "+string(r.State), "rollout", id, "version", r.Version, "reason", r.Reason)
	case before.Wave != r.Wave:
		s.log.Info("rollout wave open", "rollout", id, "version", r.Version, "wave", r.Wave, "name", r.Waves[r.Wave].Name)
	case len(before.Members) != len(r.Members):
		s.log.Info("rollout members", "rollout", id, "members", len(r.Members), "joined", len(r.Members)-len(before.Members))
	}
}

// clone copies r deep enough that advance may change the copy.
func clone(r fleet.Rollout) fleet.Rollout {
	r.Members = maps.Clone(r.Members)
	r.Waves = slices.Clone(r.Waves)
	r.Samples = slices.Clone(r.Samples)
	return r
}
