package web

import (
	"slices"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web/pages"
)

// membership is what a device's labels make of it: the groups it is in,
// the channel it follows and the pin it is held on, as fleet.Plan reads
// them (groups by name, the first that says wins).
type membership struct {
	Groups  []string
	Channel string
	// Pin is the device's own pin, or else its first group's; PinGroup
	// names that group.
	Pin      *fleet.Pin
	PinGroup string
}

// memberOf is d's membership among groups, which are sorted by name (as
// the hub gives them).
func memberOf(d fleet.Device, groups []fleet.Group) membership {
	m := membership{Groups: fleet.GroupNames(d, groups), Channel: fleet.DeviceChannel(d, groups), Pin: d.Pin}
	if m.Pin == nil {
		for _, g := range groups {
			if g.Pin != nil && g.Selector.Matches(d) {
				m.Pin, m.PinGroup = g.Pin, g.Name
				break
			}
		}
	}
	return m
}

// pinView is what the pages show of a pin.
func (m membership) pinView() *pages.PinView {
	if m.Pin == nil {
		return nil
	}
	return &pages.PinView{Pin: *m.Pin, Group: m.PinGroup}
}

// deviceFilter is the part of the Clients page's query that reads labels
// and groups, parsed once for every device.
type deviceFilter struct {
	sel    fleet.Selector
	group  *fleet.Group
	groups []fleet.Group
	pinned bool
	// err says why the query selects no device: a selector that does
	// not parse, a group that does not exist. Nothing matches then, so
	// that a bulk action on every matching device does nothing rather
	// than act on the whole fleet.
	err string
}

func newDeviceFilter(q pages.ClientsQuery, groups []fleet.Group) deviceFilter {
	f := deviceFilter{groups: groups, pinned: q.Pinned}
	if q.Labels != "" {
		sel, err := fleet.ParseSelector(q.Labels)
		if err != nil {
			f.err = "Labels: " + err.Error() + "."
		}
		f.sel = sel
	}
	if q.Group != "" {
		i := slices.IndexFunc(groups, func(g fleet.Group) bool { return g.Name == q.Group })
		if i < 0 {
			f.err = "There is no group named " + q.Group + "."
		} else {
			f.group = &groups[i]
		}
	}
	return f
}

func (f deviceFilter) match(d *fleet.Device) bool {
	switch {
	case f.err != "":
		return false
	case !f.sel.Matches(*d):
		return false
	case f.group != nil && !f.group.Selector.Matches(*d):
		return false
	case f.pinned && memberOf(*d, f.groups).Pin == nil:
		return false
	}
	return true
}
