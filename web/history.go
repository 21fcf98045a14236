package web

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web/pages"
	"github.com/thinfleet/thinfleet/wire"
)

// historyPage is how many events a page of the Update history shows.
const historyPage = 50

var eventKinds = []fleet.EventKind{
	fleet.EventRegistered, fleet.EventConnected, fleet.EventDisconnected, fleet.EventHardwareChanged,
	fleet.EventOffered, fleet.EventDownloading, fleet.EventVerifying, fleet.EventInstalling,
	fleet.EventInstalled, fleet.EventFailed, fleet.EventHeldBack,
	fleet.EventEnrolled, fleet.EventPending, fleet.EventRefused, fleet.EventRevoked,
}

func (s *Server) handleHistoryPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f := fleet.EventFilter{
			Device:  strings.TrimSpace(q.Get("device")),
			Kind:    fleet.EventKind(q.Get("event")),
			Version: strings.TrimSpace(q.Get("version")),
		}
		before, _ := strconv.ParseUint(q.Get("before"), 10, 64)
		since := s.hub.Begin(r.Context())
		v := pages.HistoryView{
			Frame:  frame(r, "Update history", "history", ""),
			Device: f.Device, Event: string(f.Kind), Version: f.Version, Kinds: eventKinds,
		}
		// Only the newest page follows along live: an older page stays put.
		if before == 0 {
			v.Live = liveURL(since, "history", "")
		} else {
			v.Newest = historyURL(f, 0)
		}
		if f.Device != "" && wire.ValidateID(f.Device) != nil {
			v.Error = "A device id is 1 to 64 letters, digits, _ and -."
			s.render(w, r, http.StatusBadRequest, pages.History(v))
			return
		}
		events, more, err := s.opts.Store.EventPage(r.Context(), f, before, historyPage)
		if err != nil {
			s.pageError(w, err)
			return
		}
		v.Events = events
		if more {
			v.Older = historyURL(f, events[len(events)-1].Seq)
		}
		s.render(w, r, http.StatusOK, pages.History(v))
	})
}
