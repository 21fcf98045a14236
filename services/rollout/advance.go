package rollout

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

// view is what a rollout is moved by: the devices (by id), the groups
// and the catalog.
type view struct {
	devices map[string]fleet.Device
	groups  []fleet.Group
	catalog fleet.Catalog
}

// advance moves running or paused rollout r at now, and reports whether
// it changed r:
//
//   - SHA256 is filled once the release is in the catalog, and the
//     version noted in Versions (it stays held back if an operator
//     changes the rollout's release, fleet.Plan); until then
//     nothing else happens (no member is chosen: the release's platforms
//     decide who can be one);
//   - the first time, the alive devices in scope become members, sorted
//     by a hash of the rollout's and the device's ids: a wave with a
//     Selector takes its matching devices first, then wave i takes the
//     devices up to ceil(Percent_i% of them all), Percent cumulative;
//   - later, an alive device in scope that is no member joins the wave
//     its hash falls in (a wave with a Selector it matches first);
//   - pinned devices (a pin is never moved by a rollout) and devices of
//     another platform than the release is for never join;
//   - each wave's devices are counted (fleet.WaveCounts), and a Sample
//     appended when the counts change;
//   - a running rollout pauses when an open wave's failures pass its
//     ErrorPercent, opens the next wave once the last open one has run
//     the release on SuccessPercent of its devices for its Soak time, and
//     completes after the last wave.
func advance(r *fleet.Rollout, v view, now time.Time) bool {
	if r.State != fleet.RolloutRunning && r.State != fleet.RolloutPaused || len(r.Waves) == 0 {
		return false
	}
	changed := false
	rel, ok := v.catalog.Release(r.Version)
	if !ok {
		return false
	}
	if r.SHA256 != rel.SHA256 {
		r.SHA256, changed = rel.SHA256, true
	}
	if !slices.ContainsFunc(r.Versions, func(v string) bool { return sameVersion(v, r.Version) }) {
		r.Versions, changed = append(r.Versions, r.Version), true
	}
	if join(r, v, rel, now) {
		changed = true
	}
	counts := count(r, v, rel)
	for i := range r.Waves {
		if r.Waves[i].Counts != counts[i] {
			r.Waves[i].Counts, changed = counts[i], true
		}
	}
	if sample(r, now) {
		changed = true
	}
	if r.State == fleet.RolloutRunning && move(r, now) {
		changed = true
	}
	if changed {
		r.Updated = now
	}
	return changed
}

// started reports whether r's members were chosen. (Its first wave is
// open from its creation, fleet.NewRollout.) A rollout that found no
// device in scope chooses them afresh when the first ones come.
func started(r *fleet.Rollout) bool { return len(r.Members) > 0 }

// join chooses r's members when it starts, and adds the devices that can
// join later; it reports whether any did.
func join(r *fleet.Rollout, v view, rel fleet.Release, now time.Time) bool {
	sels, ok := r.Scope(v.groups)
	if !ok {
		return false // its group is gone: nobody joins
	}
	var fresh []fleet.Device
	for id, d := range v.devices {
		if _, member := r.Members[id]; member || !d.Alive || !eligible(d, sels, v.groups, rel) {
			continue
		}
		fresh = append(fresh, d)
	}
	first := !started(r)
	if first && r.Waves[0].Opened.IsZero() {
		r.Waves[0].Opened = now
		if len(fresh) == 0 {
			return true
		}
	}
	if len(fresh) == 0 {
		return false
	}
	if r.Members == nil {
		r.Members = map[string]fleet.Member{}
	}
	if !first {
		for _, d := range fresh {
			if w, ok := waveOf(r, d); ok {
				r.Members[d.ID] = fleet.Member{Wave: w, From: d.Version}
			}
		}
		return true
	}
	slices.SortFunc(fresh, func(a, b fleet.Device) int {
		return cmp.Or(cmp.Compare(hash(r.ID, a.ID), hash(r.ID, b.ID)), cmp.Compare(a.ID, b.ID))
	})
	n := len(fresh)
	for i, w := range r.Waves {
		if w.Selector == nil {
			continue
		}
		for _, d := range fresh {
			if _, taken := r.Members[d.ID]; !taken && w.Selector.Matches(d) {
				r.Members[d.ID] = fleet.Member{Wave: i, From: d.Version}
			}
		}
	}
	next := 0
	for i, w := range r.Waves {
		if w.Selector != nil {
			continue
		}
		upTo := int(math.Ceil(float64(min(max(w.Percent, 0), 100)) * float64(n) / 100))
		for ; len(r.Members) < upTo && next < n; next++ {
			if d := fresh[next]; !member(r, d.ID) {
				r.Members[d.ID] = fleet.Member{Wave: i, From: d.Version}
			}
		}
	}
	return true
}

func member(r *fleet.Rollout, id string) bool {
	_, ok := r.Members[id]
	return ok
}

// waveOf is the wave a device that joins late belongs to: the first wave
// with a Selector it matches, or the first whose cumulative Percent its
// hash falls below.
func waveOf(r *fleet.Rollout, d fleet.Device) (int, bool) {
	for i, w := range r.Waves {
		if w.Selector != nil && w.Selector.Matches(d) {
			return i, true
		}
	}
	f := float64(hash(r.ID, d.ID)) / math.Exp2(64)
	for i, w := range r.Waves {
		if w.Selector == nil && f < float64(w.Percent)/100 {
			return i, true
		}
	}
	return 0, false
}

// eligible reports whether d can be a member: in scope, pinned neither
// by itself nor by a group, and of a platform the release is for.
func eligible(d fleet.Device, scope []fleet.Selector, groups []fleet.Group, rel fleet.Release) bool {
	for _, s := range scope {
		if !s.Matches(d) {
			return false
		}
	}
	return !pinned(d, groups) && fleet.PlatformMatches(rel.Platforms, fleet.Platform(d.Hardware.OS, d.Hardware.Arch))
}

// hash places device id in rollout r's order.
func hash(r, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(r))
	h.Write([]byte{0})
	h.Write([]byte(id))
	// FNV's high bits are poorly mixed for short keys that differ at
	// the end (kiosk01, kiosk02): the splitmix64 finalizer spreads them,
	// so that the hash's fraction places late devices in proportion.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// count counts each wave's members by how they stand with release rel:
// succeeded when it runs rel (or newer), failed when its install of rel
// failed or it is held back from it, in progress when its install of rel
// is under way, waiting otherwise. A member whose record is gone is not
// counted, nor one pinned since it joined (the rollout no longer moves
// it). The failures of another version (before a Retarget) do not
// count.
func count(r *fleet.Rollout, v view, rel fleet.Release) []fleet.WaveCounts {
	counts := make([]fleet.WaveCounts, len(r.Waves))
	for id, m := range r.Members {
		d, ok := v.devices[id]
		if !ok || m.Wave < 0 || m.Wave >= len(counts) || pinned(d, v.groups) {
			continue
		}
		c := &counts[m.Wave]
		c.Devices++
		in := d.Install
		ofRel := in != nil && sameVersion(in.Version, rel.Version)
		switch {
		case d.Version != "" && !wire.Newer(rel.Version, d.Version):
			c.Succeeded++
		case ofRel && d.FailedInstall(), d.Retries.For(rel) && d.Retries.HeldBack:
			c.Failed++
		case ofRel && (in.State == wire.StateDownloading || in.State == wire.StateVerifying || in.State == wire.StateInstalling):
			c.InProgress++
		default:
			c.Waiting++
		}
	}
	return counts
}

// move pauses running rollout r when an open wave failed too often, and
// otherwise opens the next wave or completes it when the last open one is
// done; it reports whether it changed r.
func move(r *fleet.Rollout, now time.Time) bool {
	for i := 0; i <= r.Wave && i < len(r.Waves); i++ {
		w := r.Waves[i]
		c := w.Counts
		if w.ErrorPercent > 0 && c.Devices > 0 && c.Failed*100 > w.ErrorPercent*c.Devices {
			r.State = fleet.RolloutPaused
			r.Reason = fmt.Sprintf("%s: %d of %d installs failed (%d%%), above its %d%% error threshold",
				r.WaveLabel(i), c.Failed, c.Devices, c.Failed*100/c.Devices, w.ErrorPercent)
			return true
		}
	}
	if len(r.Members) == 0 {
		// No device in scope has come yet: a rollout of nobody does
		// not complete (and so stop holding its release back).
		return false
	}
	w := &r.Waves[r.Wave]
	success := w.SuccessPercent
	if success <= 0 {
		success = 100
	}
	met := w.Counts.Succeeded*100 >= success*w.Counts.Devices
	switch {
	case !met && !w.Done.IsZero():
		w.Done = time.Time{} // it met its threshold, and no longer does
		return true
	case !met:
		return false
	case w.Done.IsZero():
		w.Done = now
		if w.Soak > 0 {
			return true
		}
	}
	if now.Sub(w.Done) < time.Duration(w.Soak) {
		return false
	}
	if r.Wave == len(r.Waves)-1 {
		total := fleet.WaveCounts{}
		for _, w := range r.Waves {
			total = add(total, w.Counts)
		}
		r.State = fleet.RolloutCompleted
		r.Reason = fmt.Sprintf("all %d waves done: %d of %d devices run %s", len(r.Waves), total.Succeeded, total.Devices, r.Version)
		return true
	}
	r.Wave++
	r.Waves[r.Wave].Opened = now
	return true
}

// sample appends the counts over all waves to r's Samples when they
// changed, thinning the samples evenly (every other one, the newest
// kept) when there are more than fleet.MaxSamples.
func sample(r *fleet.Rollout, now time.Time) bool {
	var total fleet.WaveCounts
	for _, w := range r.Waves {
		total = add(total, w.Counts)
	}
	if n := len(r.Samples); n > 0 && r.Samples[n-1].WaveCounts == total {
		return false
	}
	r.Samples = append(r.Samples, fleet.Sample{Time: now, WaveCounts: total})
	if len(r.Samples) > fleet.MaxSamples {
		last := r.Samples[len(r.Samples)-1]
		thin := r.Samples[:0]
		for i := 0; i < len(r.Samples)-1; i += 2 {
			thin = append(thin, r.Samples[i])
		}
		r.Samples = append(thin, last)
	}
	return true
}

func add(a, b fleet.WaveCounts) fleet.WaveCounts {
	return fleet.WaveCounts{
		Devices: a.Devices + b.Devices, Succeeded: a.Succeeded + b.Succeeded, Failed: a.Failed + b.Failed,
		InProgress: a.InProgress + b.InProgress, Waiting: a.Waiting + b.Waiting,
	}
}

func sameVersion(a, b string) bool {
	c, err := wire.CompareVersions(a, b)
	return err == nil && c == 0
}

// pinned reports whether d is pinned, by itself or by a group.
func pinned(d fleet.Device, groups []fleet.Group) bool {
	if d.Pin != nil {
		return true
	}
	for _, g := range groups {
		if g.Pin != nil && g.Selector.Matches(d) {
			return true
		}
	}
	return false
}
