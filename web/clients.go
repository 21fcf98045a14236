package web

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-version"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web/pages"
	"github.com/thinfleet/thinfleet/wire"
)

// versions compares device versions with the target and with each other,
// parsing each distinct version once: a fleet runs a handful of versions,
// and a page sorts thousands of devices by them.
type versions struct {
	target string
	parsed map[string]*version.Version // nil for what does not parse
	marks  map[string]pages.Mark
}

func newVersions(target string) *versions {
	return &versions{target: target, parsed: map[string]*version.Version{}, marks: map[string]pages.Mark{}}
}

func (vs *versions) parse(s string) *version.Version {
	v, ok := vs.parsed[s]
	if !ok {
		v, _ = wire.ParseVersion(s)
		vs.parsed[s] = v
	}
	return v
}

// mark says how a device's version stands against the target.
func (vs *versions) mark(v string) pages.Mark {
	m, ok := vs.marks[v]
	if !ok {
		m = vs.markOf(v)
		vs.marks[v] = m
	}
	return m
}

func (vs *versions) markOf(v string) pages.Mark {
	t := vs.parse(vs.target)
	if vs.target == "" || t == nil {
		return pages.NoTarget
	}
	if d := vs.parse(v); v != "" && d != nil && d.Compare(t) >= 0 {
		return pages.UpToDate
	}
	return pages.Outdated
}

// compare orders versions as versions, no version and unparsable ones
// first.
func (vs *versions) compare(a, b string) int {
	va, vb := vs.parse(a), vs.parse(b)
	switch {
	case va == nil && vb == nil:
		return strings.Compare(a, b)
	case va == nil:
		return -1
	case vb == nil:
		return 1
	}
	return va.Compare(vb)
}

// counts is how many devices run each version, newest first, devices with
// no version last.
func (vs *versions) counts(devices []fleet.Device) []pages.VersionCount {
	n := map[string]int{}
	for _, d := range devices {
		n[d.Version]++
	}
	out := make([]pages.VersionCount, 0, len(n))
	for v, c := range n {
		out = append(out, pages.VersionCount{Version: v, Count: c, Target: v != "" && v == vs.target})
	}
	slices.SortFunc(out, func(a, b pages.VersionCount) int { return -vs.compare(a.Version, b.Version) })
	return out
}

// selectClients returns the devices q selects, in its order. devices is
// sorted by id, as the hub gives it; the result points into it.
func selectClients(devices []fleet.Device, q pages.ClientsQuery, vs *versions, c fleet.Catalog, f deviceFilter) []*fleet.Device {
	needle := strings.ToLower(q.Q)
	out := make([]*fleet.Device, 0, len(devices))
	target, ok := c.TargetRelease()
	now := time.Now()
	for i := range devices {
		d := &devices[i]
		switch {
		case q.Install != "" && !installIs(*d, q.Install, target, ok, now):
		case needle != "" && !containsFold(d.ID, needle) && !containsFold(d.Hostname, needle):
		case q.Alive == "alive" && !d.Alive, q.Alive == "notalive" && d.Alive:
		case q.Version == "none" && d.Version != "":
		case q.Version != "" && q.Version != "none" && d.Version != q.Version:
		case q.Outdated && vs.mark(d.Version) != pages.Outdated:
		case !f.match(d):
		default:
			out = append(out, d)
		}
	}
	if q.Sort == "" || q.Sort == "id" {
		if q.Desc {
			slices.Reverse(out)
		}
		return out // in id order already
	}
	by := columnOrder(q.Sort, vs, out)
	slices.SortStableFunc(out, func(a, b *fleet.Device) int {
		if q.Desc {
			return -by(a, b)
		}
		return by(a, b)
	})
	return out
}

// columnOrder is the order of a column of the Clients page, for devices.
// Ties keep the order they are in (by id: the sort is stable).
func columnOrder(col string, vs *versions, devices []*fleet.Device) func(a, b *fleet.Device) int {
	switch col {
	case "hostname":
		return func(a, b *fleet.Device) int { return strings.Compare(a.Hostname, b.Hostname) }
	case "os":
		return func(a, b *fleet.Device) int {
			return cmp.Or(strings.Compare(a.Hardware.OS, b.Hardware.OS), strings.Compare(a.Hardware.Platform, b.Hardware.Platform),
				strings.Compare(a.Hardware.PlatformVersion, b.Hardware.PlatformVersion))
		}
	case "cpu":
		return func(a, b *fleet.Device) int {
			return cmp.Or(strings.Compare(a.Hardware.CPUModel, b.Hardware.CPUModel), cmp.Compare(a.Hardware.CPUCores, b.Hardware.CPUCores))
		}
	case "memory":
		return func(a, b *fleet.Device) int { return cmp.Compare(a.Hardware.MemoryTotal, b.Hardware.MemoryTotal) }
	case "disk":
		total := make(map[*fleet.Device]uint64, len(devices))
		for _, d := range devices {
			total[d] = diskTotal(d)
		}
		return func(a, b *fleet.Device) int { return cmp.Compare(total[a], total[b]) }
	case "addresses":
		first := make(map[*fleet.Device]string, len(devices))
		for _, d := range devices {
			if as := pages.Addresses(d.Hardware); len(as) > 0 {
				first[d] = as[0]
			}
		}
		return func(a, b *fleet.Device) int { return strings.Compare(first[a], first[b]) }
	case "version":
		// A fleet runs a handful of versions: rank them once.
		var distinct []string
		for _, d := range devices {
			if !slices.Contains(distinct, d.Version) {
				distinct = append(distinct, d.Version)
			}
		}
		slices.SortFunc(distinct, vs.compare)
		rank := make(map[string]int, len(distinct))
		for i, v := range distinct {
			rank[v] = i
		}
		return func(a, b *fleet.Device) int { return cmp.Compare(rank[a.Version], rank[b.Version]) }
	case "status":
		return func(a, b *fleet.Device) int { return cmp.Compare(b2i(a.Alive), b2i(b.Alive)) }
	case "seen":
		return func(a, b *fleet.Device) int { return a.LastSeen.Compare(b.LastSeen) }
	}
	return func(a, b *fleet.Device) int { return strings.Compare(a.ID, b.ID) }
}

// installIs reports whether d's install mark is the Clients filter's
// "failed" (held back ones included) or "held".
func installIs(d fleet.Device, filter string, target fleet.Release, ok bool, now time.Time) bool {
	m, _ := installNote(d, target, ok, now)
	if filter == "held" {
		return m == pages.InstallHeld
	}
	return m == pages.InstallFailed || (m == pages.InstallHeld && d.FailedInstall())
}

func diskTotal(d *fleet.Device) uint64 {
	disk, _ := pages.MainDisk(d.Hardware)
	return disk.Total
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
