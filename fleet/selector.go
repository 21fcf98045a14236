package fleet

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/thinfleet/thinfleet/wire"
)

// Labels are key=value pairs on a device: the agent reports some
// (--label site=berlin), operators add tags, and selectors choose devices
// by them.
type Labels map[string]string

// MaxLabels is the most labels a device reports, and the most tags an
// operator gives it. The rules of a label are wire's (wire.ValidateLabel):
// the agent checks its own with them.
const MaxLabels = wire.MaxLabels

// ValidateLabel reports whether key=value is a valid label.
func ValidateLabel(key, value string) error { return wire.ValidateLabel(key, value) }

// Validate reports whether every label is valid and there are at most
// MaxLabels.
func (l Labels) Validate() error { return wire.ValidateLabels(l) }

// ParseLabel parses "key=value" (or "key", an empty value).
func ParseLabel(s string) (key, value string, err error) { return wire.ParseLabel(s) }

// String is the labels as "k1=v1,k2=v2", sorted by key.
func (l Labels) String() string {
	parts := make([]string, 0, len(l))
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}

// Selector chooses devices by their labels: every requirement must hold.
// The zero Selector chooses every device.
type Selector struct {
	// Match: the device has each key with that value.
	Match Labels `json:"match,omitempty"`
	// IDs: the device is one of these (a selection made by hand on the
	// dashboard); empty means any.
	IDs []string `json:"ids,omitempty"`
}

// ParseSelector parses "k1=v1,k2=v2"; "" and "all" select every device.
func ParseSelector(s string) (Selector, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" || s == "*" {
		return Selector{}, nil
	}
	sel := Selector{Match: Labels{}}
	for part := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue // "a=1,,b=2" or a trailing comma
		}
		k, v, err := ParseLabel(part)
		if err != nil {
			return Selector{}, fmt.Errorf("selector %q: %w", s, err)
		}
		if old, dup := sel.Match[k]; dup && old != v {
			return Selector{}, fmt.Errorf("selector %q: %s is both %q and %q; no device matches", s, k, old, v)
		}
		sel.Match[k] = v
	}
	if len(sel.Match) > MaxLabels {
		return Selector{}, fmt.Errorf("selector %q: more than %d labels", s, MaxLabels)
	}
	if len(sel.Match) == 0 {
		return Selector{}, nil
	}
	return sel, nil
}

// Empty reports whether sel chooses every device.
func (sel Selector) Empty() bool { return len(sel.Match) == 0 && len(sel.IDs) == 0 }

// String is the selector in ParseSelector's form ("all" when empty); a
// selection by id shows as "N devices".
func (sel Selector) String() string {
	var parts []string
	if len(sel.Match) > 0 {
		parts = append(parts, sel.Match.String())
	}
	if len(sel.IDs) > 0 {
		parts = append(parts, fmt.Sprintf("%d devices", len(sel.IDs)))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, " and ")
}

// Matches reports whether device d is chosen by sel, by its id and its
// labels and tags (Device.AllLabels).
func (sel Selector) Matches(d Device) bool {
	if len(sel.IDs) > 0 && !slices.Contains(sel.IDs, d.ID) {
		return false
	}
	if len(sel.Match) == 0 {
		return true
	}
	all := d.AllLabels()
	for k, v := range sel.Match {
		if got, ok := all[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// AllLabels returns d's labels with its tags over them: an operator's tag
// wins over what the agent reports under the same key.
func (d Device) AllLabels() Labels {
	if len(d.Tags) == 0 {
		return d.Labels
	}
	all := make(Labels, len(d.Labels)+len(d.Tags))
	maps.Copy(all, d.Labels)
	maps.Copy(all, d.Tags)
	return all
}
