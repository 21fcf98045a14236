package fleet

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Pin holds a device, or every device of a group, on one version: it is
// offered that version (an upgrade, or a deliberate downgrade the agent
// accepts as a rollback) and never moved by a rollout.
type Pin struct {
	Version string    `json:"version"`
	Reason  string    `json:"reason,omitempty"`
	By      string    `json:"by,omitempty"`
	Time    time.Time `json:"time"`
}

// Group is a saved selector: the devices whose labels match it. A group
// may follow a release channel, pin its devices to a version and allow
// installs only in a maintenance window.
type Group struct {
	Name     string   `json:"name"`
	Selector Selector `json:"selector"`
	// Channel is the release channel the group's devices follow
	// (Release.Channel); empty follows the default, stable.
	Channel string    `json:"channel,omitempty"`
	Pin     *Pin      `json:"pin,omitempty"`
	Window  *Window   `json:"window,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

var groupName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidateGroupName reports whether name can name a group (and a rollout):
// 1 to 63 characters of [a-z0-9_-], starting with a letter or digit.
func ValidateGroupName(name string) error {
	if !groupName.MatchString(name) {
		return fmt.Errorf("name %q: want 1 to 63 characters of a-z 0-9 _ - starting with a letter or digit", name)
	}
	return nil
}

// DefaultChannel is the channel of a release that names none.
const DefaultChannel = "stable"

// ReleaseChannel is r's channel, DefaultChannel when it names none.
func ReleaseChannel(r Release) string {
	if r.Channel == "" {
		return DefaultChannel
	}
	return strings.ToLower(r.Channel)
}

// Window is a maintenance window: the days and hours, in a named time
// zone, when installs may start. End before Start spans midnight.
type Window struct {
	// Days are the weekdays the window opens on ("mon".."sun"); empty
	// means every day.
	Days []string `json:"days,omitempty"`
	// Start and End are "15:04" in Zone.
	Start string `json:"start"`
	End   string `json:"end"`
	// Zone is an IANA time zone name ("Europe/Berlin"); empty is UTC.
	Zone string `json:"zone,omitempty"`
}

var weekdays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// Validate reports whether w can be used.
func (w Window) Validate() error {
	for _, d := range w.Days {
		if !slices.Contains(weekdays, strings.ToLower(d)) {
			return fmt.Errorf("window day %q: want one of %s", d, strings.Join(weekdays, ", "))
		}
	}
	for _, t := range []string{w.Start, w.End} {
		if _, err := time.Parse("15:04", t); err != nil {
			return fmt.Errorf("window time %q: want HH:MM", t)
		}
	}
	if _, err := loadLocation(w.Zone); err != nil {
		return fmt.Errorf("window zone %q: %w", w.Zone, err)
	}
	return nil
}

// locations caches time.LoadLocation, which reads the zone database
// from disk on every call: a window is checked for every device on
// every decision.
var locations sync.Map // zone name → *time.Location or error

func loadLocation(zone string) (*time.Location, error) {
	if v, ok := locations.Load(zone); ok {
		if loc, ok := v.(*time.Location); ok {
			return loc, nil
		}
		return nil, v.(error)
	}
	loc, err := time.LoadLocation(zone)
	if len(zone) <= 64 { // a bounded cache of what operators typed
		if err != nil {
			locations.Store(zone, err)
		} else {
			locations.Store(zone, loc)
		}
	}
	return loc, err
}

// Open reports whether the window is open at t: from Start, included, to
// End, excluded. A window that does not validate is never open. A window
// spanning midnight belongs to the day it opens on; one whose End is its
// Start lasts the whole day.
func (w Window) Open(t time.Time) bool {
	if w.Validate() != nil {
		return false
	}
	loc, _ := loadLocation(w.Zone)
	t = t.In(loc)
	start, _ := time.Parse("15:04", w.Start)
	end, _ := time.Parse("15:04", w.End)
	minute := func(c time.Time) int { return c.Hour()*60 + c.Minute() }
	now, from, to := minute(t), minute(start), minute(end)
	day := t.Weekday()
	switch {
	case from == to:
		// The whole day.
	case from < to:
		if now < from || now >= to {
			return false
		}
	case now >= from:
		// Before midnight, on the day it opened.
	case now < to:
		day = (day + 6) % 7 // after midnight: it opened the day before
	default:
		return false
	}
	return len(w.Days) == 0 || slices.ContainsFunc(w.Days, func(d string) bool { return strings.ToLower(d) == weekdays[day] })
}

// String is the window in one line: "mon,tue 02:00-04:00 Europe/Berlin".
func (w Window) String() string {
	days := "daily"
	if len(w.Days) > 0 {
		days = strings.Join(w.Days, ",")
	}
	zone := w.Zone
	if zone == "" {
		zone = "UTC"
	}
	return fmt.Sprintf("%s %s-%s %s", days, w.Start, w.End, zone)
}

// InWindow reports whether device d may start an automatic install at
// t: windows is set when a group that matches d has a maintenance
// window, and open when one of those windows is open at t.
func InWindow(d Device, groups []Group, t time.Time) (open, windows bool) {
	for _, g := range groups {
		if g.Window == nil || !g.Selector.Matches(d) {
			continue
		}
		windows = true
		if g.Window.Open(t) {
			return true, true
		}
	}
	return false, windows
}
