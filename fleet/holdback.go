package fleet

import (
	"fmt"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// Retries is the automatic retry of a release whose install failed on a
// device. The decision service counts the failed installs of the release
// and offers it again after a pause that doubles with each failure; after
// Tries failures the device is held back, offered nothing more of that
// release until an operator offers it again (which clears the count) or
// another release becomes the target. It is kept in the device record so
// that a restart of the service resumes where it stood.
type Retries struct {
	// Version and SHA256 name the release; a new release starts afresh.
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	// Failures counts the failed installs of the release.
	Failures int `json:"failures"`
	// Tries is how many failures hold the device back.
	Tries int `json:"tries"`
	// Counted is the start of the last install counted (Install.Started):
	// an install is counted once, however often its record is seen.
	Counted time.Time `json:"counted"`
	// Next is when the release is offered again; zero when held back.
	Next time.Time `json:"next,omitzero"`
	// HeldBack is set once Failures reached Tries.
	HeldBack bool `json:"held_back,omitempty"`
}

// For reports whether rs counts the installs of release r.
func (rs *Retries) For(r Release) bool {
	if rs == nil || rs.SHA256 != r.SHA256 {
		return false
	}
	c, err := wire.CompareVersions(rs.Version, r.Version)
	return err == nil && c == 0
}

// Hold says why a device is not offered a release now.
type Hold struct {
	// Reason is one line for the operator; "" when the release is to be
	// offered now.
	Reason string
	// HeldBack is set when nothing but an operator or another release
	// will change that: failed too often, or not for the device's
	// platform.
	HeldBack bool
	// Retry is set when the offer, now or later, tries again an install
	// that failed (wire.Offer.Retry: the agent would refuse it otherwise).
	Retry bool
}

// FailedInstall reports whether the latest install of d failed in a way
// that counts: an interruption (a crash, a power cut) does not, since the
// agent tries those again by itself.
func (d Device) FailedInstall() bool {
	in := d.Install
	return in != nil && in.State == wire.StateFailed && !strings.HasPrefix(in.Detail, "interrupted")
}

// failedInstallOf reports whether d's latest install, of release r's
// version, failed in a way that counts.
func (d Device) failedInstallOf(r Release) bool {
	if !d.FailedInstall() {
		return false
	}
	c, err := wire.CompareVersions(d.Install.Version, r.Version)
	return err == nil && c == 0
}

// NeedsCount reports whether d's latest install is a failed install of r
// that its Retries do not count yet; once held back, none is.
func (d Device) NeedsCount(r Release) bool {
	if !d.failedInstallOf(r) {
		return false
	}
	rs := d.Retries
	return !rs.For(r) || !rs.HeldBack && d.Install.Started.After(rs.Counted)
}

// CountFailure counts d's failed install of r, when NeedsCount, and
// plans the next try: first after first, each pause twice the one before
// and at most last, from the failure's time (now if the record has
// none), and held back at the tries-th failure. It reports whether it
// changed d.
func (d *Device) CountFailure(r Release, tries int, first, last time.Duration, now time.Time) bool {
	if !d.NeedsCount(r) {
		return false
	}
	rs := d.Retries
	if !rs.For(r) {
		rs = &Retries{Version: r.Version, SHA256: r.SHA256}
	} else {
		c := *rs
		rs = &c
	}
	rs.Failures++
	rs.Tries = tries
	rs.Counted = d.Install.Started
	rs.Next, rs.HeldBack = time.Time{}, rs.Failures >= tries
	if !rs.HeldBack {
		pause := first
		for i := 1; i < rs.Failures && pause < last; i++ {
			pause *= 2
		}
		// From the failure's own time, so that a restart plans the
		// same moment.
		at := d.Install.Updated
		if at.IsZero() {
			at = now
		}
		rs.Next = at.Add(min(pause, last)).UTC()
	}
	d.Retries = rs
	return true
}

// OfferedAgain clears d's count of failed installs of r, as an operator
// offering it again does: the failures so far no longer hold it back.
func (d *Device) OfferedAgain(r Release) {
	rs := &Retries{Version: r.Version, SHA256: r.SHA256}
	if d.Retries.For(r) {
		rs.Tries = d.Retries.Tries
	}
	if d.failedInstallOf(r) {
		rs.Counted = d.Install.Started
	}
	d.Retries = rs
}

// HoldBack says why d is not to be offered release r at now, or nothing.
// It never offers a downgrade, nor r to a device of another platform than
// r is for; a failed install of r is tried again only when its Retries
// say so.
func (d Device) HoldBack(r Release, now time.Time) Hold {
	h, next := d.hold(r, false)
	if !next.IsZero() && now.Before(next) {
		h.Reason = d.retryWhy(r)
	}
	return h
}

// hold is HoldBack without the clock: a planned retry of r that is not
// held back comes as next, the time it is due, with no reason. A
// rollback allows a version older than the installed one.
func (d Device) hold(r Release, rollback bool) (h Hold, next time.Time) {
	switch {
	case d.Version == "":
	case rollback && sameVersion(r.Version, d.Version), !rollback && !wire.Newer(r.Version, d.Version):
		return Hold{Reason: "runs " + d.Version}, time.Time{}
	}
	if len(r.Platforms) > 0 {
		p := Platform(d.Hardware.OS, d.Hardware.Arch)
		switch {
		case p == "":
			return Hold{Reason: fmt.Sprintf("%s is for %s; the device has not reported its platform", r.Version, strings.Join(r.Platforms, ", "))}, time.Time{}
		case !PlatformMatches(r.Platforms, p):
			return Hold{Reason: fmt.Sprintf("%s is for %s, not %s", r.Version, strings.Join(r.Platforms, ", "), p), HeldBack: true}, time.Time{}
		}
	}
	if !d.failedInstallOf(r) {
		return Hold{}, time.Time{}
	}
	rs := d.Retries
	switch {
	case d.NeedsCount(r):
		return Hold{Reason: fmt.Sprintf("install of %s failed; the next try is being planned", r.Version), Retry: true}, time.Time{}
	case rs.HeldBack:
		return Hold{Reason: fmt.Sprintf("held back after %d failed installs of %s", rs.Failures, r.Version), HeldBack: true, Retry: true}, time.Time{}
	}
	return Hold{Retry: true}, rs.Next
}

// retryWhy says when the next try of r, whose install failed, is due.
func (d Device) retryWhy(r Release) string {
	rs := d.Retries
	return fmt.Sprintf("install of %s failed %s; try %d of %d at %s", r.Version, times(rs.Failures), rs.Failures+1, rs.Tries, rs.Next.Format(time.TimeOnly+" MST"))
}

// sameVersion reports whether a and b are the same version (1.0 = 1.0.0).
func sameVersion(a, b string) bool {
	c, err := wire.CompareVersions(a, b)
	return err == nil && c == 0
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}
