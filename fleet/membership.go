package fleet

import (
	"cmp"
	"slices"
)

// GroupNames returns the names of the groups whose selector matches d,
// sorted by name; never nil.
func GroupNames(d Device, groups []Group) []string {
	names := []string{}
	for _, g := range groups {
		if g.Selector.Matches(d) {
			names = append(names, g.Name)
		}
	}
	slices.Sort(names)
	return names
}

// DeviceChannel is the release channel d follows: that of the first group,
// by name, that matches d and follows a channel (as Plan chooses it), or
// DefaultChannel when none does.
func DeviceChannel(d Device, groups []Group) string {
	var first *Group
	for i := range groups {
		g := &groups[i]
		if g.Channel == "" || (first != nil && cmp.Less(first.Name, g.Name)) || !g.Selector.Matches(d) {
			continue
		}
		first = g
	}
	if first == nil {
		return DefaultChannel
	}
	return ReleaseChannel(Release{Channel: first.Channel})
}
