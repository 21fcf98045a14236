package fleet

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// Target is what one device should be offered, and why: the answer of
// Plan.
type Target struct {
	// Release is the release the plan concerns: the one to offer when OK,
	// otherwise the one held back (zero when there is none).
	Release Release
	// OK is set when Release is to be offered: now, or at NotBefore when
	// that is set (a planned retry of a failed install). The decision
	// service still offers it only inside the device's maintenance
	// windows and within its rollout's MaxConcurrent.
	OK bool
	// Why is one line for the operator: why this release, or why none.
	Why string
	// Pinned is set when a pin (the device's or a group's) chose Release.
	Pinned bool
	// Rollout is the id of the rollout that chose or holds back Release,
	// and Wave the device's wave in it.
	Rollout string
	Wave    int
	// Rollback is set when Release is older than what the device runs
	// and it is offered on purpose (a pin, a rolled back rollout): the
	// agent installs an older version only then (wire.Offer.Rollback).
	Rollback bool
	// Retry is set when the offer tries again an install of Release that
	// failed (wire.Offer.Retry); HeldBack when nothing but an operator or
	// another release will change that the device is not offered it.
	Retry    bool
	HeldBack bool
	// NotBefore is when a planned retry is due; zero when the offer is
	// due now.
	NotBefore time.Time
}

// Plan says what device d should be offered, from the catalog c, the
// groups and the rollouts, in this order of precedence:
//
//  1. the device's pin: the release of that version (a rollback when it
//     is older than what the device runs);
//  2. the pin of the first group (by name) that matches d;
//  3. the active rollouts, earliest created first: a member of an open
//     wave of a running rollout gets its release; a member of a rolled
//     back rollout that runs its release gets the version it ran before,
//     as a rollback; and every other device is held back from the
//     release of an active rollout (and the ones it had before an
//     operator changed it, Rollout.Versions), whatever follows says: a
//     rollout gates its release for the whole fleet;
//  4. a completed rollout's release, for the devices in its scope, when
//     it is newer than what 5 or 6 give;
//  5. the channel of the first group (by name) that matches d and follows
//     one: the newest release of that channel, or the catalog's target
//     when that is newer;
//  6. the catalog's target.
//
// A pinned device is never moved by a rollout. Then the rules of
// HoldBack apply: no downgrade but a rollback, no release for another
// platform, a failed install tried again only as its Retries say. Plan
// reads no clock: a retry not yet due comes with NotBefore.
func Plan(d Device, c Catalog, groups []Group, rollouts []Rollout) Target {
	groups = sortedGroups(groups)
	if t, ok := planPin(d, c, groups); ok {
		return t
	}
	active, completed := sortedRollouts(rollouts)
	gates := map[string]Target{} // held back releases, by their version
	for _, r := range active {
		m, member := r.Members[d.ID]
		switch {
		case r.State == RolloutRunning && member && m.Wave <= r.Wave:
			rel, ok := c.Release(r.Version)
			if !ok {
				return Target{Rollout: r.ID, Wave: m.Wave, Why: fmt.Sprintf("rollout %s waits for release %s, which is not in the catalog", r.ID, r.Version)}
			}
			return finish(d, Target{Release: rel, OK: true, Rollout: r.ID, Wave: m.Wave, Why: fmt.Sprintf("rollout %s, %s", r.ID, r.WaveLabel(m.Wave))})
		case r.State == RolloutRolledBack && member && d.Version != "" && r.Rolled(d.Version):
			t := Target{Rollout: r.ID, Wave: m.Wave}
			if m.From == "" {
				t.Why = fmt.Sprintf("rollout %s rolled back; the device ran no version before it", r.ID)
				return t
			}
			rel, ok := c.Release(m.From)
			if !ok {
				t.Why = fmt.Sprintf("rollout %s rolled back to %s, which is not in the catalog", r.ID, m.From)
				return t
			}
			t.Release, t.OK, t.Rollback = rel, true, wire.Newer(d.Version, rel.Version)
			t.Why = fmt.Sprintf("rollout %s rolled back to %s", r.ID, m.From)
			return finish(d, t)
		}
		for _, v := range append([]string{r.Version}, r.Versions...) {
			if _, seen := gates[canonical(v)]; !seen {
				gates[canonical(v)] = Target{Rollout: r.ID, Wave: m.Wave, Why: r.gateWhy(m, member)}
			}
		}
	}

	t := planChannel(d, c, groups)
	for _, r := range completed {
		if !r.inScope(d, groups) || (t.Release.Version != "" && !wire.Newer(r.Version, t.Release.Version)) {
			continue
		}
		if rel, ok := c.Release(r.Version); ok {
			t = Target{Release: rel, OK: true, Rollout: r.ID, Why: fmt.Sprintf("rollout %s completed", r.ID)}
		}
	}
	if !t.OK {
		return t
	}
	if g, gated := gates[canonical(t.Release.Version)]; gated && !sameVersion(d.Version, t.Release.Version) {
		g.Release = t.Release
		return g
	}
	return finish(d, t)
}

// planPin is Plan's first two steps: the device's pin, or its first
// group's (groups sorted by name).
func planPin(d Device, c Catalog, groups []Group) (Target, bool) {
	pin, by := d.Pin, ""
	if pin == nil {
		for _, g := range groups {
			if g.Pin != nil && g.Selector.Matches(d) {
				pin, by = g.Pin, " by group "+g.Name
				break
			}
		}
	}
	if pin == nil {
		return Target{}, false
	}
	t := Target{Pinned: true, Why: "pinned to " + pin.Version + by}
	rel, ok := c.Release(pin.Version)
	if !ok {
		t.Why = fmt.Sprintf("pinned to %s%s, which is not in the catalog", pin.Version, by)
		return t, true
	}
	t.Release, t.OK = rel, true
	t.Rollback = d.Version != "" && wire.Newer(d.Version, rel.Version)
	return finish(d, t), true
}

// planChannel is Plan's last two steps: the channel of the first group
// that follows one, or the catalog's target.
func planChannel(d Device, c Catalog, groups []Group) Target {
	target, ok := c.TargetRelease()
	t := Target{Release: target, OK: ok, Why: cmp.Or(c.TargetReason, "the catalog's target")}
	if !ok {
		t.Why = "no target: " + c.TargetReason
	}
	for _, g := range groups {
		if g.Channel == "" || !g.Selector.Matches(d) {
			continue
		}
		ch := ReleaseChannel(Release{Channel: g.Channel})
		if ch == DefaultChannel {
			return t
		}
		// Releases are newest first: the first of the channel is its
		// newest. The catalog's target stands for stable, so that a
		// policy file that holds stable back holds it back here too.
		for _, r := range c.Releases {
			if ReleaseChannel(r) == ch {
				if !ok || wire.Newer(r.Version, target.Version) {
					return Target{Release: r, OK: true, Why: fmt.Sprintf("channel %s of group %s", ch, g.Name)}
				}
				break
			}
		}
		return t
	}
	return t
}

// finish applies HoldBack's rules to a plan that offers t.Release.
func finish(d Device, t Target) Target {
	h, next := d.hold(t.Release, t.Rollback)
	t.Retry, t.HeldBack = h.Retry, h.HeldBack
	switch {
	case h.Reason != "":
		t.OK = false
		t.Why = h.Reason
	case !next.IsZero():
		t.NotBefore = next
		t.Why = d.retryWhy(t.Release)
	}
	return t
}

// WaveLabel names wave i in a sentence: "wave canary" for a wave named
// canary, "wave 2" for the second wave when it has no name (or is named
// so, as NewRollout names them).
func (r Rollout) WaveLabel(i int) string {
	name := ""
	if i >= 0 && i < len(r.Waves) {
		name = r.Waves[i].Name
	}
	switch {
	case name == "":
		return fmt.Sprintf("wave %d", i+1)
	case strings.HasPrefix(strings.ToLower(name), "wave"):
		return name
	}
	return "wave " + name
}

// gateWhy says why a device that is (member) or is not a member m of
// active rollout r is held back from its release.
func (r Rollout) gateWhy(m Member, member bool) string {
	switch {
	case r.State == RolloutPaused && r.Reason != "":
		return fmt.Sprintf("rollout %s paused: %s", r.ID, r.Reason)
	case r.State == RolloutPaused:
		return fmt.Sprintf("rollout %s paused", r.ID)
	case r.State == RolloutAborted:
		return fmt.Sprintf("rollout %s aborted", r.ID)
	case r.State == RolloutRolledBack:
		return fmt.Sprintf("rollout %s rolled back", r.ID)
	case member:
		return fmt.Sprintf("waiting for %s of rollout %s", r.WaveLabel(m.Wave), r.ID)
	}
	return fmt.Sprintf("not in rollout %s of %s", r.ID, r.Version)
}

// Scope returns the selectors a device must match to be in r's scope:
// r's own, and its group's when it names one (ok false when that group
// is not among groups: no device is in scope).
func (r Rollout) Scope(groups []Group) (sels []Selector, ok bool) {
	sels = []Selector{r.Selector}
	if r.Group == "" {
		return sels, true
	}
	i := slices.IndexFunc(groups, func(g Group) bool { return g.Name == r.Group })
	if i < 0 {
		return nil, false
	}
	return append(sels, groups[i].Selector), true
}

// inScope reports whether d is a member of r or matches its scope.
func (r Rollout) inScope(d Device, groups []Group) bool {
	if _, ok := r.Members[d.ID]; ok {
		return true
	}
	sels, ok := r.Scope(groups)
	if !ok {
		return false
	}
	for _, s := range sels {
		if !s.Matches(d) {
			return false
		}
	}
	return true
}

// sortedGroups returns groups sorted by name, without copying when they
// are already.
func sortedGroups(groups []Group) []Group {
	byName := func(a, b Group) int { return cmp.Compare(a.Name, b.Name) }
	if slices.IsSortedFunc(groups, byName) {
		return groups
	}
	groups = slices.Clone(groups)
	slices.SortFunc(groups, byName)
	return groups
}

// sortedRollouts returns the active and the completed rollouts, each
// earliest created first.
func sortedRollouts(rollouts []Rollout) (active, completed []Rollout) {
	for _, r := range rollouts {
		if r.State.Active() {
			active = append(active, r)
		} else {
			completed = append(completed, r)
		}
	}
	byCreated := func(a, b Rollout) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	}
	slices.SortFunc(active, byCreated)
	slices.SortFunc(completed, byCreated)
	return active, completed
}

// canonical is v in a form equal for equal versions (1.0 and 1.0.0).
func canonical(v string) string {
	if p, err := wire.ParseVersion(v); err == nil {
		return p.String()
	}
	return v
}
