package pages

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

// RolloutsView is the Rollouts page: every rollout, newest first.
type RolloutsView struct {
	Frame
	Rows []RolloutRow
}

// RolloutRow is one rollout as the pages show it.
type RolloutRow struct {
	fleet.Rollout
	// Counts are the rollout's over all its waves.
	Counts fleet.WaveCounts
	// Scope says which devices it is for: "all devices", "group kiosks".
	Scope string
}

// RolloutURL is a rollout's page.
func RolloutURL(id string) string { return "/rollouts/" + url.PathEscape(id) }

// RolloutView is one rollout's page.
type RolloutView struct {
	Frame
	RolloutRow
	// InCatalog is whether the catalog has the rollout's release yet: a
	// rollout may be created before its zip is dropped, and waits.
	InCatalog bool
	// Versions are the catalog's versions, newest first, for changing
	// the release.
	Versions []string
	// ActionError says why the action just asked for was not done.
	ActionError string
	// Members are one page of the rollout's devices, of Matching that
	// the query selects, on Pages pages.
	Members         []MemberRow
	MemberQuery     MemberQuery
	Matching, Pages int
	// ByState counts the rollout's devices by their state, for the
	// filter.
	ByState map[MemberState]int
}

// MemberState is how a device of a rollout stands with its release.
type MemberState string

// The member states, in the order the pages list them.
const (
	MemberFailed     MemberState = "failed"
	MemberInProgress MemberState = "in progress"
	MemberWaiting    MemberState = "waiting"
	MemberSucceeded  MemberState = "succeeded"
	MemberPinned     MemberState = "pinned"
	MemberGone       MemberState = "gone"
)

// MemberStates are the states a rollout's device table filters by.
var MemberStates = []MemberState{MemberFailed, MemberInProgress, MemberWaiting, MemberSucceeded, MemberPinned, MemberGone}

// MemberRow is one device of a rollout.
type MemberRow struct {
	ID       string
	Wave     string
	State    MemberState
	Version  string // what the device runs now
	From     string // what it ran when it joined
	Alive    bool
	Known    bool   // the device is in the fleet (not deleted since)
	Detail   string // why, in one line: a failure's detail, a pin's reason
	Progress *fleet.Install
}

// MemberQuery is which of a rollout's devices its page lists.
type MemberQuery struct {
	State MemberState // "" for every state
	Page  int         // from 1
}

// MembersPer is how many devices a rollout's page lists at once.
const MembersPer = 50

// ParseMemberQuery reads a MemberQuery from a URL's query string,
// ignoring what it does not understand.
func ParseMemberQuery(v url.Values) MemberQuery {
	q := MemberQuery{Page: 1}
	for _, s := range MemberStates {
		if v.Get("state") == string(s) {
			q.State = s
		}
	}
	if n, err := strconv.Atoi(v.Get("page")); err == nil && n > 0 {
		q.Page = n
	}
	return q
}

// URL is the rollout id's page showing q.
func (q MemberQuery) URL(id string) string {
	v := url.Values{}
	if q.State != "" {
		v.Set("state", string(q.State))
	}
	if q.Page > 1 {
		v.Set("page", itoa(q.Page))
	}
	if len(v) == 0 {
		return RolloutURL(id) + "#devices"
	}
	return RolloutURL(id) + "?" + v.Encode() + "#devices"
}

// NewRolloutView is the New rollout form.
type NewRolloutView struct {
	Frame
	Form RolloutForm
	// Versions are the catalog's versions, newest first; Groups the
	// names of the groups.
	Versions []string
	Groups   []string
	Error    string
}

// RolloutForm is what the New rollout form holds, as typed.
type RolloutForm struct {
	ID           string
	Version      string // chosen from the catalog
	OtherVersion string // typed: a version not in the catalog yet
	Scope        string // "all", "group" or "selector"
	Group        string
	Selector     string
	Waves        string
	Success      string
	Error        string
	Soak         string // how long each wave holds before the next: "10m"
	Concurrent   string
}

// StateBadge is the colour of a rollout's state.
func StateBadge(st fleet.RolloutState) string {
	switch st {
	case fleet.RolloutRunning:
		return "badge info"
	case fleet.RolloutPaused:
		return "badge warn"
	case fleet.RolloutCompleted:
		return "badge ok"
	}
	return "badge bad"
}

// StateWord is a rollout's state for people.
func StateWord(st fleet.RolloutState) string {
	if st == fleet.RolloutRolledBack {
		return "rolled back"
	}
	return string(st)
}

// WaveStatus says where wave i of r stands: "done", "open" or "not
// open yet".
func WaveStatus(r fleet.Rollout, i int) string {
	switch {
	case !r.Waves[i].Done.IsZero():
		return "done"
	case i <= r.Wave:
		return "open"
	}
	return "not open yet"
}

// WaveReach is which devices a wave reaches, for people.
func WaveReach(w fleet.Wave) string {
	if w.Selector != nil {
		return "devices with " + w.Selector.String()
	}
	return itoa(w.Percent) + "% of the devices"
}

// Thresholds says when a wave lets the next one open and when it pauses
// the rollout.
func Thresholds(w fleet.Wave) string {
	success := w.SuccessPercent
	if success == 0 {
		success = 100
	}
	s := fmt.Sprintf("next wave at %d%% succeeded", success)
	if w.Soak > 0 {
		s += " for " + time.Duration(w.Soak).String()
	}
	if w.ErrorPercent > 0 {
		s += fmt.Sprintf(" · pauses at %d%% failed", w.ErrorPercent)
	} else {
		s += " · never pauses by itself"
	}
	return s
}

// Share is n of total as a whole percentage ("0" when total is 0).
func Share(n, total int) string {
	if total <= 0 {
		return "0"
	}
	return itoa(n * 100 / total)
}

// waveOf says which wave a rollout is at: "wave 2 of 3 (half)".
func waveOf(r fleet.Rollout) string {
	if len(r.Waves) == 0 {
		return ""
	}
	if r.State == fleet.RolloutCompleted {
		return "all " + itoa(len(r.Waves)) + " waves done"
	}
	i := min(max(r.Wave, 0), len(r.Waves)-1)
	return "wave " + itoa(i+1) + " of " + itoa(len(r.Waves)) + " (" + r.Waves[i].Name + ")"
}

// byWhom says who did something, if known.
func byWhom(by string) string {
	if by == "" {
		return ""
	}
	return "by " + by
}

// reasonTitle heads the reason of a rollout in state st.
func reasonTitle(st fleet.RolloutState) string {
	switch st {
	case fleet.RolloutPaused:
		return "Paused."
	case fleet.RolloutCompleted:
		return "Completed."
	case fleet.RolloutAborted:
		return "Aborted."
	case fleet.RolloutRolledBack:
		return "Rolled back."
	}
	return ""
}

func waveClass(status string) string {
	switch status {
	case "done":
		return "done"
	case "open":
		return "open"
	}
	return "later"
}

func waveBadge(status string) string {
	switch status {
	case "done":
		return "ok"
	case "open":
		return "info"
	}
	return "muted"
}

// otherVersions are versions without current: the releases a rollout of
// current can change to.
func otherVersions(versions []string, current string) []string {
	var out []string
	for _, v := range versions {
		if v != current {
			out = append(out, v)
		}
	}
	return out
}
