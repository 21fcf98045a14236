package pages

import (
	"maps"
	"slices"
	"strings"

	"github.com/thinfleet/thinfleet/fleet"
)

// Chip is one label of a device as the pages show it: Tag when an
// operator set it (it wins over the agent's label of the same key).
type Chip struct {
	Key, Value string
	Tag        bool
}

// String is the chip as key=value, or the key alone for an empty value.
func (c Chip) String() string {
	if c.Value == "" {
		return c.Key
	}
	return c.Key + "=" + c.Value
}

// Chips are d's labels and tags by key, a tag in place of the label it
// overrides.
func Chips(d fleet.Device) []Chip {
	all := d.AllLabels()
	out := make([]Chip, 0, len(all))
	for _, k := range slices.Sorted(maps.Keys(all)) {
		_, tag := d.Tags[k]
		out = append(out, Chip{Key: k, Value: all[k], Tag: tag})
	}
	return out
}

// PinWhy is a pin's reason and who set it, in one line.
func PinWhy(p PinView) string {
	var parts []string
	if p.Reason != "" {
		parts = append(parts, Shown(p.Reason))
	}
	switch {
	case p.Group != "":
		parts = append(parts, "pin of group "+p.Group)
	case p.By != "":
		parts = append(parts, "by "+Shown(p.By))
	}
	return strings.Join(parts, " · ")
}

// BulkActions are the bulk actions of the Clients page, by the API's
// name, and what their button says done.
var BulkActions = map[string]string{
	"offer-again": "Offered the target again to", "retry-failed": "Offered a failed install again to",
	"approve": "Approved", "tag": "Tagged", "untag": "Untagged", "pin": "Pinned", "unpin": "Unpinned",
	"delete": "Deleted",
}

// BulkConfirmView asks before a bulk action that cannot be undone.
type BulkConfirmView struct {
	Frame
	IDs  []string
	Back string // the Clients page to return to
}

// maxListed is how many devices a confirmation lists by id.
const maxListed = 50

func devicesCount(n int) string {
	if n == 1 {
		return "1 device"
	}
	return itoa(n) + " devices"
}
