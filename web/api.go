package web

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/thinfleet/thinfleet/downloadlink"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

func handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// Update is a release as the API shows it.
type Update struct {
	fleet.Release
	URL    string `json:"url"`
	Target bool   `json:"target"`
}

func (s *Server) updates(c fleet.Catalog) []Update {
	out := make([]Update, 0, len(c.Releases))
	for _, r := range c.Releases {
		out = append(out, Update{
			Release: r,
			URL:     s.opts.PublicURL + "/downloads/" + url.PathEscape(r.File),
			Target:  r.Version == c.Target,
		})
	}
	return out
}

func (s *Server) handleUpdates() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.opts.Store.Catalog(r.Context())
		if err != nil {
			s.internalError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, s.updates(c))
	})
}

func (s *Server) handleCatalog() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.opts.Store.Catalog(r.Context())
		if err != nil {
			s.internalError(w, err)
			return
		}
		refused := c.Refused
		if refused == nil {
			refused = []fleet.Refused{}
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"updates": s.updates(c), "refused": refused,
			"target": c.Target, "target_reason": c.TargetReason, "updated": c.Updated,
		})
	})
}

func (s *Server) handleHistory() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f := fleet.EventFilter{
			Device:  q.Get("device"),
			Kind:    fleet.EventKind(q.Get("event")),
			Version: q.Get("version"),
			Limit:   1000,
		}
		if f.Device != "" && wire.ValidateID(f.Device) != nil {
			writeParamError(w, &paramError{"device", wire.ErrInvalidID.Error()})
			return
		}
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 || n > 100000 {
				writeParamError(w, &paramError{"limit", "want a number from 1 to 100000"})
				return
			}
			f.Limit = n
		}
		events, err := s.opts.Store.Events(r.Context(), f)
		if err != nil {
			s.internalError(w, err)
			return
		}
		if events == nil {
			events = []fleet.Event{}
		}
		// An agent's error may quote its download link: the history hands
		// out no working one.
		for i := range events {
			events[i].Detail = downloadlink.Redact(events[i].Detail)
		}
		writeJSON(w, http.StatusOK, events)
	})
}

func (s *Server) internalError(w http.ResponseWriter, err error) {
	s.log.Error("request failed", "err", err)
	writeError(w, http.StatusInternalServerError, "internal error; see the server log")
}
