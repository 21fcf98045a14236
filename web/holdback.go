package web

import (
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/downloadlink"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web/pages"
	"github.com/thinfleet/thinfleet/wire"
)

// installNote says, in one line, how device d stands with the target
// release r: held back (the decision will not offer r without an
// operator, fleet.Device.HoldBack), or its latest install failed, with
// why; or nothing.
func installNote(d fleet.Device, r fleet.Release, ok bool, now time.Time) (pages.InstallMark, string) {
	if !ok || !wire.Newer(r.Version, d.Version) {
		return pages.InstallFine, ""
	}
	if h := d.HoldBack(r, now); h.HeldBack {
		return pages.InstallHeld, h.Reason
	}
	if in := d.Install; in != nil && in.State == wire.StateFailed {
		why := in.Detail
		if h := d.HoldBack(r, now); h.Reason != "" {
			why += "; " + h.Reason
		}
		return pages.InstallFailed, oneLine(why)
	}
	return pages.InstallFine, ""
}

// oneLine is s on one line of at most 160 characters, without the
// signature of a download link in it.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(downloadlink.Redact(s)), " ")
	if r := []rune(s); len(r) > 160 {
		return string(r[:159]) + "…"
	}
	return s
}
