package decision

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// Each device is offered what fleet.Plan says, from the catalog, the
// groups and the rollouts, all kept in memory from watches of their
// buckets. What starts an offer:
//
//   - the existing triggers, which offer the plan whether or not it was
//     offered before (a device may have missed it): a version report, a
//     catalog change (to every alive device), a device that turns alive
//     again or whose platform becomes known, a retry that is due;
//   - a change of the plan, which offers it only where it differs from
//     what the service last offered the device (release and rollback):
//     a change of a rollout or a group, a device's labels, tags or pin, a
//     maintenance window that opens, a slot of a rollout's MaxConcurrent
//     that frees. A rollout record is written about once a second while
//     it moves; re-planning on each write offers nothing twice.
//
// Two gates hold an automatic offer back at the moment it would go out:
// a maintenance window (a device in a group with a window is offered
// only while one of its groups' windows is open) and a rollout's
// MaxConcurrent (installs of its release in progress among its members,
// counting those offered and not yet reported for OfferGrace). The
// gates are checked, and the offer reserved, under s.om, so that two
// triggers at once cannot both take the last slot.

// policy is the groups and rollouts Plan reads, as one value.
type policy struct {
	groups   []fleet.Group // sorted by name
	rollouts []fleet.Rollout
}

// rollout returns the rollout with id.
func (p *policy) rollout(id string) (fleet.Rollout, bool) {
	for _, r := range p.rollouts {
		if r.ID == id {
			return r, true
		}
	}
	return fleet.Rollout{}, false
}

// sent is what the service last offered a device.
type sent struct {
	version  string
	sha      string
	rollback bool
	rollout  string
	offer    string // the offer's id, once published
	at       time.Time
}

// same reports whether the plan t is what s offered.
func (s sent) same(t fleet.Target) bool {
	return s.sha == t.Release.SHA256 && s.rollback == t.Rollback && s.version == t.Release.Version
}

// plan returns what device d should be offered now.
func (s *Service) plan(d fleet.Device) fleet.Target {
	p := s.policy.Load()
	return fleet.Plan(d, *s.catalog.Load(), p.groups, p.rollouts)
}

// policyWatch keeps one bucket's values by key, and publishes the
// policy when they change.
type policyWatch[T any] struct {
	values map[string]T
	loaded chan struct{}
	once   sync.Once
}

func newPolicyWatch[T any]() *policyWatch[T] {
	return &policyWatch[T]{values: map[string]T{}, loaded: make(chan struct{})}
}

// watchGroups keeps the groups in s.policy until ctx ends, and re-plans
// every device when one changes.
func (s *Service) watchGroups(ctx context.Context) error {
	followPolicy(ctx, s, "group", s.groups, s.store.WatchGroups, func(prev, next fleet.Group) bool { return true })
	return nil
}

// watchRollouts keeps the rollouts in s.policy until ctx ends, and
// re-plans every device when one changes in a way that can change a
// plan (not its counts or samples).
func (s *Service) watchRollouts(ctx context.Context) error {
	followPolicy(ctx, s, "rollout", s.rollouts, s.store.WatchRollouts, plansDiffer)
	return nil
}

// followPolicy keeps w's values from watch (of the bucket of what) until
// ctx ends, watching again when the watch breaks: once the initial
// values are in, and at each change after, it publishes the policy, and
// re-plans every device (but at the very first load, which the
// service's start follows with a plan of every device) unless relevant
// says a changed value cannot change a plan (a value new or deleted
// always can).
func followPolicy[T any](ctx context.Context, s *Service, what string, w *policyWatch[T],
	watch func(context.Context, func(store.Change[T]) error) error, relevant func(prev, next T) bool) {
	s.store.Rewatch(ctx, s.log, what+"s", func(ctx context.Context) error {
		fresh := map[string]T{}
		return watch(ctx, func(c store.Change[T]) error {
			replan := true
			if !c.Loaded {
				prev, had := fresh[c.Key]
				if c.Deleted {
					delete(fresh, c.Key)
				} else {
					fresh[c.Key] = c.Value
					replan = !had || relevant(prev, c.Value)
				}
				if c.Initial {
					return nil
				}
			}
			s.pmu.Lock()
			w.values = maps.Clone(fresh)
			s.publishPolicy()
			s.pmu.Unlock()
			if c.Loaded {
				first := false
				w.once.Do(func() { close(w.loaded); first = true })
				if first {
					// The service's start plans every device, once
					// everything is loaded (the catalog's first value):
					// a re-plan here could come after that start and
					// offer everything twice.
					return nil
				}
			}
			if replan {
				s.replanAll(ctx, what+" "+c.Key)
			}
			return nil
		})
	})
}

// plansDiffer reports whether a rollout changed in a way that can change
// what a device is offered: not only its counts, samples or reason.
func plansDiffer(a, b fleet.Rollout) bool {
	return a.State != b.State || a.Wave != b.Wave || a.Version != b.Version || a.SHA256 != b.SHA256 ||
		a.MaxConcurrent != b.MaxConcurrent || a.Group != b.Group || !a.Created.Equal(b.Created) ||
		!slices.Equal(a.Versions, b.Versions) || a.Selector.String() != b.Selector.String() || !slices.Equal(a.Selector.IDs, b.Selector.IDs) ||
		!maps.Equal(a.Members, b.Members)
}

// publishPolicy makes the groups and rollouts held the policy Plan reads.
// The caller holds s.pmu.
func (s *Service) publishPolicy() {
	p := &policy{
		groups:   slices.Collect(maps.Values(s.groups.values)),
		rollouts: slices.Collect(maps.Values(s.rollouts.values)),
	}
	slices.SortFunc(p.groups, func(a, b fleet.Group) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(p.rollouts, func(a, b fleet.Rollout) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	s.policy.Store(p)
}

// candidate is a device and the plan to offer it.
type candidate struct {
	d    fleet.Device
	plan fleet.Target
}

// candidates plans every alive device that keep accepts (every one when
// keep is nil), and returns those whose plan is to be offered now; it
// asks for the failed installs of their planned releases to be counted.
func (s *Service) candidates(keep func(fleet.Device) bool) []candidate {
	var out []candidate
	var count []string
	now := time.Now()
	s.mu.RLock()
	for id, d := range s.devices {
		if keep != nil && !keep(d) {
			continue
		}
		t := s.plan(d)
		if d.NeedsCount(t.Release) {
			count = append(count, id)
		}
		if d.Alive && t.OK && !now.Before(t.NotBefore) {
			out = append(out, candidate{d, t})
		}
	}
	s.mu.RUnlock()
	s.retries.count(count...)
	return out
}

// gate checks the offer-time gates for a pass of offers, under s.om; it
// counts each rollout's installs in progress once a pass.
type gate struct {
	s    *Service
	now  time.Time // the clock of the maintenance windows
	real time.Time
	pol  *policy
	busy map[string]int // by rollout id
}

func (s *Service) newGate() *gate {
	return &gate{s: s, now: s.now(), real: time.Now(), pol: s.policy.Load(), busy: map[string]int{}}
}

// admit reports whether c is to be offered now, and reserves it: unless
// force, only a plan that differs from what was last offered; never
// outside the device's maintenance windows, nor beyond its rollout's
// MaxConcurrent. The caller holds s.om.
func (g *gate) admit(c candidate, force bool) bool {
	s, t := g.s, c.plan
	if !s.started.Load() {
		return false // the policy is not all read yet
	}
	last, offered := s.sent[c.d.ID]
	if !force && offered && last.same(t) {
		return false
	}
	if open, windows := fleet.InWindow(c.d, g.pol.groups, g.now); windows && !open {
		s.log.Debug("no offer: outside the maintenance window", "device", c.d.ID, "version", t.Release.Version)
		// Forgotten, so that the re-plan when the window opens (or a
		// slot frees, below) offers it, even a retry that was due
		// while it was closed.
		delete(s.sent, c.d.ID)
		return false
	}
	if r, ok := g.pol.rollout(t.Rollout); ok && r.MaxConcurrent > 0 && !t.Rollback && sameVersion(r.Version, t.Release.Version) {
		if g.s.busy(c.d, r, g.real) {
			// Already counted: its install is under way, or offered.
		} else {
			n, counted := g.busy[r.ID]
			if !counted {
				n = s.inProgress(r, g.real)
				g.busy[r.ID] = n
			}
			if n >= r.MaxConcurrent {
				s.log.Debug("no offer: rollout at its concurrency", "device", c.d.ID, "rollout", r.ID, "max", r.MaxConcurrent)
				delete(s.sent, c.d.ID)
				return false
			}
			g.busy[r.ID] = n + 1
		}
	}
	s.sent[c.d.ID] = sent{version: t.Release.Version, sha: t.Release.SHA256, rollback: t.Rollback, rollout: t.Rollout, at: g.real}
	return true
}

// inProgress counts rollout r's members whose install of its release is
// under way. The caller holds s.om.
func (s *Service) inProgress(r fleet.Rollout, now time.Time) int {
	n := 0
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id := range r.Members {
		if d, ok := s.devices[id]; ok && s.busy(d, r, now) {
			n++
		}
	}
	return n
}

// busy reports whether d's install of r's release is under way: in a
// state of progress, or offered within OfferGrace and not reported since.
// The caller holds s.om.
func (s *Service) busy(d fleet.Device, r fleet.Rollout, now time.Time) bool {
	if d.Version != "" && !wire.Newer(r.Version, d.Version) {
		return false
	}
	in := d.Install
	if in != nil && sameVersion(in.Version, r.Version) && underWay(in) {
		return true
	}
	last, ok := s.sent[d.ID]
	if !ok || last.rollback || !sameVersion(last.version, r.Version) || now.Sub(last.at) > s.offerGrace {
		return false
	}
	// Offered: busy until the device reports on that offer.
	return in == nil || last.offer == "" || in.OfferID != last.offer
}

// offered notes the id of the offer published to device id.
func (s *Service) offered(id, offer string) {
	s.om.Lock()
	if o, ok := s.sent[id]; ok {
		o.offer = offer
		s.sent[id] = o
	}
	s.om.Unlock()
}

// admit runs the gates for cs and returns those to offer now.
func (s *Service) admit(cs []candidate, force bool) []candidate {
	s.om.Lock()
	defer s.om.Unlock()
	g := s.newGate()
	// Devices of a rollout's earlier waves first, so that the next
	// waiting member takes a slot that frees; then by id, for a steady
	// order.
	slices.SortFunc(cs, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(a.plan.Wave, b.plan.Wave), cmp.Compare(a.d.ID, b.d.ID))
	})
	out := cs[:0]
	for _, c := range cs {
		if g.admit(c, force) {
			out = append(out, c)
		}
	}
	return out
}

// replanAll offers every alive device its plan where the plan changed.
func (s *Service) replanAll(ctx context.Context, why string) {
	s.offerAll(ctx, s.admit(s.candidates(nil), false), why, nil)
}

// replanMembers offers rollout r's alive members their plans where they
// changed: a slot of its MaxConcurrent may have freed.
func (s *Service) replanMembers(ctx context.Context, r fleet.Rollout) {
	keep := func(d fleet.Device) bool { _, ok := r.Members[d.ID]; return ok }
	s.offerAll(ctx, s.admit(s.candidates(keep), false), "rollout "+r.ID, nil)
}

// offerAll publishes the offers of cs, then records them in the history
// without waiting (store.Recorder); dedup makes an event's dedup id (one
// of its own when nil).
func (s *Service) offerAll(ctx context.Context, cs []candidate, why string, dedup func(fleet.Event, fleet.Target) string) {
	if len(cs) == 0 {
		return
	}
	now := time.Now()
	prepared := map[string]*prepared{}
	events := make([]fleet.Event, 0, len(cs))
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		rel := c.plan.Release
		p := prepared[rel.SHA256+rel.Version]
		if p == nil {
			var err error
			if p, err = s.prepare(rel, now); err != nil {
				s.log.Error("nothing offered", "version", rel.Version, "err", err)
				continue
			}
			prepared[rel.SHA256+rel.Version] = p
		}
		e, id, err := s.send(p, c.d.ID, c.d.Version, c.plan)
		if err != nil {
			s.log.Error("offer", "device", c.d.ID, "version", rel.Version, "err", err)
			continue
		}
		s.offered(c.d.ID, id)
		events = append(events, e)
		ids = append(ids, id)
	}
	s.log.Info("offered", "why", why, "offers", len(events))
	s.background.Go(func() {
		for i, e := range events {
			d := "offered-" + e.Device + "-" + ids[i]
			if dedup != nil {
				d = dedup(e, cs[i].plan)
			}
			s.rec.Append(ctx, e, d, s.logAppend(e))
		}
	})
}

// watchWindows re-plans every device when a maintenance window opens,
// and the members of each rollout with a MaxConcurrent (an offer not
// reported within OfferGrace frees its slot), every WindowCheck, until
// ctx ends.
func (s *Service) watchWindows(ctx context.Context) error {
	t := time.NewTicker(s.windowCheck)
	defer t.Stop()
	// The windows open now were open for the catalog's pass at start.
	open := map[string]bool{}
	for _, g := range s.policy.Load().groups {
		open[g.Name] = g.Window != nil && g.Window.Open(s.now())
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		p, now := s.policy.Load(), s.now()
		opened := false
		for _, g := range p.groups {
			if g.Window == nil {
				continue
			}
			o := g.Window.Open(now)
			if o && !open[g.Name] {
				opened = true
			}
			open[g.Name] = o
		}
		if opened {
			s.replanAll(ctx, "maintenance window open")
			continue
		}
		for _, r := range p.rollouts {
			if r.MaxConcurrent > 0 && r.State == fleet.RolloutRunning {
				s.replanMembers(ctx, r)
			}
		}
	}
}

// concurrencyFreed re-plans the members of the running rollouts with a
// MaxConcurrent that device d, changed from prev, is a member of, when
// its install moved on: a slot may have freed.
func (s *Service) concurrencyFreed(ctx context.Context, prev, d fleet.Device) {
	// Only an install that ended frees a slot (each re-plan of the
	// members costs a plan of each): not every step it reports.
	if prev.Version == d.Version && (!underWay(prev.Install) || underWay(d.Install)) {
		return
	}
	for _, r := range s.policy.Load().rollouts {
		if _, member := r.Members[d.ID]; member && r.MaxConcurrent > 0 && r.State == fleet.RolloutRunning {
			s.replanMembers(ctx, r)
		}
	}
}

// underWay reports whether install in is in a state of progress.
func underWay(in *fleet.Install) bool {
	if in == nil {
		return false
	}
	switch in.State {
	case wire.StateDownloading, wire.StateVerifying, wire.StateInstalling:
		return true
	}
	return false
}

func sameVersion(a, b string) bool {
	c, err := wire.CompareVersions(a, b)
	return err == nil && c == 0
}

// describe is the history detail's note of why t was offered.
func describe(t fleet.Target) string {
	var parts []string
	if t.Rollback {
		parts = append(parts, "a rollback")
	}
	if t.Retry {
		parts = append(parts, "trying a failed install again")
	}
	if t.Pinned || t.Rollout != "" {
		parts = append(parts, t.Why)
	}
	if len(parts) == 0 {
		return ""
	}
	return ", " + strings.Join(parts, ", ")
}
