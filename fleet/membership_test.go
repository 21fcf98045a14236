package fleet

import (
	"slices"
	"testing"
)

func TestGroupNamesAndChannel(t *testing.T) {
	sel := func(s string) Selector {
		sl, err := ParseSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		return sl
	}
	groups := []Group{
		{Name: "zeta", Selector: sel("site=berlin"), Channel: "nightly"},
		{Name: "canary", Selector: sel("ring=canary"), Channel: "Beta"},
		{Name: "berlin", Selector: sel("site=berlin")},
		{Name: "paris", Selector: sel("site=paris"), Channel: "stable"},
	}
	tests := []struct {
		name        string
		d           Device
		wantGroups  []string
		wantChannel string
	}{
		{"no labels", Device{ID: "a"}, []string{}, "stable"},
		{"berlin", Device{ID: "b", Labels: Labels{"site": "berlin"}}, []string{"berlin", "zeta"}, "nightly"},
		{"berlin canary: the first group by name with a channel", Device{ID: "c", Labels: Labels{"site": "berlin", "ring": "canary"}}, []string{"berlin", "canary", "zeta"}, "beta"},
		{"a tag over a label", Device{ID: "d", Labels: Labels{"site": "berlin"}, Tags: Labels{"site": "paris"}}, []string{"paris"}, "stable"},
	}
	for _, tt := range tests {
		if got := GroupNames(tt.d, groups); !slices.Equal(got, tt.wantGroups) {
			t.Errorf("%s: GroupNames = %v, want %v", tt.name, got, tt.wantGroups)
		}
		if got := DeviceChannel(tt.d, groups); got != tt.wantChannel {
			t.Errorf("%s: DeviceChannel = %q, want %q", tt.name, got, tt.wantChannel)
		}
	}
}
