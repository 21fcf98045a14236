package pages

import (
	"net/url"
	"strconv"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

// Frame is what every page's frame needs.
type Frame struct {
	Title string
	// Nav names the current navigation item: overview, clients,
	// rollouts, history, updates, downloads or audit.
	Nav string
	// Live is the URL of the page's live stream; empty for none.
	Live string
	// Now is when the page was rendered; relative times count from it.
	Now time.Time
	// Notice is a message about the action just done, if any.
	Notice string
}

// Mark says how a device's version stands against the target.
type Mark int

// The marks.
const (
	NoTarget Mark = iota // nothing is offered, so nothing is outdated
	UpToDate
	Outdated
)

// OverviewView is the Overview page.
type OverviewView struct {
	Frame
	Total, Alive, UpToDate, Outdated int
	// Failed and Held count the devices whose install of the target
	// failed, and those held back.
	Failed, Held int
	// Pending is how many devices wait for an operator's approval.
	Pending int
	// Rollouts counts the rollouts running and paused; Paused is the
	// newest paused one, if any, with its reason.
	Rollouts, RolloutsPaused int
	Paused                   *fleet.Rollout

	Target     string
	Versions   []VersionCount
	Installing []fleet.Device
	Events     []fleet.Event
}

// VersionCount is how many devices run one version.
type VersionCount struct {
	Version string // empty for devices with no version yet
	Count   int
	Target  bool
}

// ClientRow is one device on the Clients page.
type ClientRow struct {
	fleet.Device
	Mark    Mark
	Revoked bool
	// Groups are the groups the device is in, by name; Channel the
	// release channel it follows.
	Groups  []string
	Channel string
	// Pin holds the device on a version: its own, or its group's; nil
	// when nothing does.
	Pin *PinView
	// Install says whether the target's install failed or is held back,
	// and Why in one line.
	Install InstallMark
	Why     string
}

// PinView is a pin as the pages show it: a device's own, or one it has
// from Group.
type PinView struct {
	fleet.Pin
	Group string
}

// InstallMark is how a device stands with the target's install.
type InstallMark int

// The install marks: held back is failed too often (or not for the
// device's platform), so the target is not offered without an operator.
const (
	InstallFine InstallMark = iota
	InstallFailed
	InstallHeld
)

// ClientsView is the Clients page.
type ClientsView struct {
	Frame
	Query ClientsQuery
	Rows  []ClientRow
	// Matching is how many devices the query selects, of Total.
	Matching, Total int
	Pages           int
	Versions        []string // every version some device runs, for the filter
	Target          string
	// Groups name every group, for the filter; Releases are the catalog's
	// versions, newest first, for the pin action.
	Groups   []string
	Releases []string
	// FilterError says why the filters select no device (a selector that
	// does not parse, a group that does not exist).
	FilterError string
	// Bulk is the result of the bulk action just done; nil when none.
	Bulk *BulkResult
	// Pending are the devices waiting for approval, longest waiting
	// first, at most MaxPending of them; PendingMore counts the rest.
	Pending     []fleet.Enrollment
	PendingMore int
}

// BulkResult is what a bulk action on the Clients page did: how many
// devices it acted on, and each one it could not act on, with why.
type BulkResult struct {
	Action string
	Done   int
	Failed []BulkFailure
	// Skipped are the devices the action does not apply to (offer again
	// to one that runs the target), with why.
	Skipped []BulkFailure
	// Error says why the action was not done at all.
	Error string
}

// BulkFailure is one device a bulk action could not act on, or skipped.
type BulkFailure struct {
	ID, Error string
}

// MaxPending is how many waiting devices the Clients page lists.
const MaxPending = 100

// ClientView is the Client detail page.
type ClientView struct {
	Frame
	// Reported is whether the device has reported to the fleet; a device
	// waiting for approval has not, and Device then has only its id.
	Reported bool
	Device   fleet.Device
	// Enrollment is the device's identity at the broker; nil when none is
	// recorded.
	Enrollment *fleet.Enrollment
	// EnrollError says why the approval or revocation just asked for was
	// not done.
	EnrollError string
	Mark        Mark
	Target      string
	// Labels, groups, channel and pin of the device, as on its row of the
	// Clients page.
	Groups  []string
	Channel string
	Pin     *PinView
	// Plan is what the device is offered and why; nil when the server
	// cannot say.
	Plan *PlanView
	// OfferNote says why the offer action is not available; empty when
	// it is, offering OfferVersion.
	OfferNote    string
	OfferVersion string
	// Hold says why the decision does not offer the target to the
	// device (held back, a retry planned, another platform); empty when
	// nothing holds it back.
	Hold   string
	Events []fleet.Event
	// OlderEvents is the URL of the device's older events; empty when
	// Events are all of them.
	OlderEvents string
}

// PlanView is what a device should be offered and why (fleet.Plan).
type PlanView struct {
	// Version is the release the plan concerns: offered when OK, held
	// back otherwise; empty when there is none.
	Version string
	OK      bool
	Why     string
	Pinned  bool
	// Rollout names the rollout that chose or holds back the release,
	// Wave the device's wave in it (from 1; 0 without a rollout).
	Rollout  string
	Wave     int
	Rollback bool
	// NotBefore is when a planned retry is due; zero when not waiting.
	NotBefore time.Time
	// Installed: the device runs Version already.
	Installed bool
}

// Revoked reports whether the device's identity is revoked.
func (v ClientView) Revoked() bool {
	return v.Enrollment != nil && v.Enrollment.State == fleet.EnrollRevoked
}

// HistoryView is the Update history page.
type HistoryView struct {
	Frame
	Device, Event, Version string
	Kinds                  []fleet.EventKind
	Events                 []fleet.Event
	// Older and Newest are the URLs of the next page and of the first;
	// empty when there is none.
	Older, Newest string
	Error         string
}

// ReleaseRow is one release on the Available updates and Downloads pages.
type ReleaseRow struct {
	fleet.Release
	Target  bool
	Devices int    // devices running this version
	URL     string // where to download it
}

// UpdatesView is the Available updates page.
type UpdatesView struct {
	Frame
	Releases             []ReleaseRow
	Refused              []fleet.Refused
	Target, TargetReason string
	// Versions counts every version devices run, released or not.
	Versions []VersionCount
	Scanned  time.Time
}

// DownloadsView is the Downloads page.
type DownloadsView struct {
	Frame
	Releases []ReleaseRow
}

// LoginView is the login form.
type LoginView struct {
	Next  string
	Error string
}

// HistoryURL is the Update history filtered to one device.
func HistoryURL(device string) string {
	return "/history?" + url.Values{"device": {device}}.Encode()
}

// ClientURL is a device's detail page.
func ClientURL(id string) string { return "/clients/" + url.PathEscape(id) }

func itoa[T int | int64 | uint64](n T) string { return strconv.FormatInt(int64(n), 10) }
