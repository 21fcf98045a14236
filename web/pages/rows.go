package pages

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/thinfleet/thinfleet/downloadlink"
	"github.com/thinfleet/thinfleet/fleet"
)

// HistoryRow is one line of a readable history: an install of a version
// on a device, with its steps, or any other event on its own.
type HistoryRow struct {
	Device  string
	Version string
	// Kind is the event; for an install, the step it has reached
	// (installed or failed once it is over).
	Kind fleet.EventKind
	// Time is when the row's newest event happened.
	Time time.Time
	// Detail is one line: an event's detail, an install's failure
	// reason, or where an install came from. Download links in it have
	// lost their signature.
	Detail string
	// Steps are an install's steps, oldest first; nil for another event.
	Steps []Step
	// Offers are the ids of the offers an install answered, from the
	// offer events' details.
	Offers []string
	// Retry: the install tries a failed one again (an automatic retry,
	// or an operator's offer again).
	Retry bool
	// Newest: the row is the device's newest install among the rows,
	// the one its page shows the output of.
	Newest bool
	// Unfinished: the install neither ended nor goes on; a later one of
	// the same version started over (the agent was restarted in the
	// middle, say).
	Unfinished bool
}

// Install reports whether the row is an install's steps.
func (r HistoryRow) Install() bool { return r.Steps != nil }

// InProgress reports whether the row is an install the device is
// working on: downloading, verifying or installing.
func (r HistoryRow) InProgress() bool {
	return r.Install() && !r.Unfinished && stepRank[r.Kind] > stepRank[fleet.EventOffered] && stepRank[r.Kind] < stepRank[fleet.EventInstalled]
}

// Step is one step of an install: offered, downloading, verifying,
// installing, installed or failed. Count is how many times it was
// reported in a row (an offer sent again while the device was away);
// Time is the first.
type Step struct {
	Kind  fleet.EventKind
	Time  time.Time
	Count int
}

// stepRank orders an install's steps; an event of another kind has none.
var stepRank = map[fleet.EventKind]int{
	fleet.EventOffered: 1, fleet.EventDownloading: 2, fleet.EventVerifying: 3, fleet.EventInstalling: 4,
	fleet.EventInstalled: 5, fleet.EventFailed: 5,
}

// maxDetail bounds a row's detail line, in bytes; the full text is on
// the device's page.
const maxDetail = 240

// HistoryRows groups history events, newest first as the store returns
// them, into rows, newest first: the steps one device reported of one
// version's install become one row, and every other event stays a row of
// its own. Events of other devices may come between the steps of an
// install. A row sits where its newest event is, so an install in
// progress moves up as it goes on.
//
// An install runs from its offer (or, when the offer is not among the
// events, its first step) to installed or failed. An offer repeated
// before the device acted, or while it installs, joins the same row (the
// agent ignores an offer of what it is installing); a step that goes
// back (downloading after installing, without a failure) starts a new
// install and leaves the old one unfinished.
func HistoryRows(events []fleet.Event) []HistoryRow {
	type built struct {
		row    HistoryRow
		newest int    // index in events of the row's newest event
		from   string // the offer's "from" version
		note   string // what else the offer said
		start  time.Time
	}
	var all []*built
	open := map[string]*built{} // by device and version
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		rank, step := stepRank[e.Event]
		if !step {
			all = append(all, &built{row: HistoryRow{Device: e.Device, Version: e.Version, Kind: e.Event, Time: e.Time, Detail: oneLine(e.Detail)}, newest: i})
			continue
		}
		key := e.Device + "\x00" + e.Version
		b := open[key]
		if b != nil {
			last := b.row.Steps[len(b.row.Steps)-1]
			if e.Event != fleet.EventOffered && rank < stepRank[last.Kind] {
				b.row.Unfinished = true
				b = nil
			}
		}
		if b == nil {
			b = &built{row: HistoryRow{Device: e.Device, Version: e.Version, Steps: []Step{}}, start: e.Time}
			all = append(all, b)
			open[key] = b
		}
		b.newest = i
		b.row.Time = e.Time
		if e.Event == fleet.EventOffered {
			id, from, note, retry := parseOffer(e.Detail)
			if id != "" && !slices.Contains(b.row.Offers, id) {
				b.row.Offers = append(b.row.Offers, id)
			}
			if b.from == "" {
				b.from = from
			}
			if b.note == "" {
				b.note = note
			}
			b.row.Retry = b.row.Retry || retry
		}
		// A repeated offer once the device has acted is not a step.
		steps := b.row.Steps
		switch n := len(steps); {
		case n > 0 && steps[n-1].Kind == e.Event:
			steps[n-1].Count++
		case n == 0 || e.Event != fleet.EventOffered:
			b.row.Steps = append(steps, Step{Kind: e.Event, Time: e.Time, Count: 1})
		}
		b.row.Kind = b.row.Steps[len(b.row.Steps)-1].Kind
		if e.Event == fleet.EventInstalled || e.Event == fleet.EventFailed {
			delete(open, key)
			if e.Event == fleet.EventFailed {
				b.row.Detail = oneLine(e.Detail)
			} else {
				b.row.Detail = offerDetail(b.from, b.note, e.Time.Sub(b.start))
			}
		}
	}
	for _, b := range all {
		if b.row.Install() && b.row.Detail == "" {
			b.row.Detail = offerDetail(b.from, b.note, 0)
		}
	}
	slices.SortStableFunc(all, func(a, b *built) int { return a.newest - b.newest })
	rows := make([]HistoryRow, len(all))
	seen := map[string]bool{}
	for i, b := range all {
		rows[i] = b.row
		if rows[i].Install() && !seen[b.row.Device] {
			rows[i].Newest, seen[b.row.Device] = true, true
		}
	}
	return rows
}

// parseOffer reads an offer event's detail, as the decision service and
// an operator's offer again write it: "offer ID, from 1.0[, a rollback]
// [, trying a failed install again][, why]" or "offered again by an
// operator[, a rollback]". The note is what it says besides the id, the
// version it came from and the retry.
func parseOffer(detail string) (id, from, note string, retry bool) {
	var notes []string
	for p := range strings.SplitSeq(detail, ", ") {
		switch {
		case strings.HasPrefix(p, "offer ") && id == "":
			id = strings.TrimPrefix(p, "offer ")
		case strings.HasPrefix(p, "from ") && from == "":
			from = strings.TrimPrefix(p, "from ")
		case p == "trying a failed install again":
			retry = true
		case p == OfferedAgain:
			retry = true
			notes = append(notes, p)
		case p != "":
			notes = append(notes, p)
		}
	}
	return id, from, strings.Join(notes, ", "), retry
}

// OfferedAgain is the detail of an operator's offer again, as the
// history shows it.
const OfferedAgain = "offered again by an operator"

// offerDetail is an install's line of detail: the version it came from,
// what the offer said besides, and how long it took once it is done.
func offerDetail(from, note string, took time.Duration) string {
	var parts []string
	switch from {
	case "":
	case "no version":
		parts = append(parts, "first install")
	default:
		parts = append(parts, "from "+from)
	}
	if note != "" {
		parts = append(parts, note)
	}
	if took >= time.Second {
		parts = append(parts, "took "+took.Round(time.Second).String())
	}
	return strings.Join(parts, "; ")
}

// oneLine is s on one line, without download links' signatures, cut to
// maxDetail bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(downloadlink.Redact(s)), " ")
	if len(s) <= maxDetail {
		return s
	}
	cut := maxDetail
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// StepTime is a step's time of day, or its date and time when it is not
// on the day of the row's first step.
func StepTime(t, first time.Time) string {
	t, first = t.UTC(), first.UTC()
	if t.YearDay() == first.YearDay() && t.Year() == first.Year() {
		return t.Format("15:04:05")
	}
	return t.Format("Jan 2 15:04:05")
}

// StepLabel is a step's name, with how many times it was reported when
// more than once.
func StepLabel(s Step) string {
	if s.Count > 1 {
		return fmt.Sprintf("%s ×%d", s.Kind, s.Count)
	}
	return string(s.Kind)
}
