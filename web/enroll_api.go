package web

import (
	"net/http"
	"slices"
	"strings"

	"github.com/thinfleet/thinfleet/fleet"
)

// handleEnrollments lists every device's identity: pending, approved or
// revoked, with the public key its credentials were issued for.
func (s *Server) handleEnrollments() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ens, err := s.opts.Store.Enrollments(r.Context())
		if err != nil {
			s.internalError(w, err)
			return
		}
		slices.SortFunc(ens, func(a, b fleet.Enrollment) int { return strings.Compare(a.ID, b.ID) })
		if ens == nil {
			ens = []fleet.Enrollment{}
		}
		writeJSON(w, http.StatusOK, ens)
	})
}

// handleEnrollState approves or revokes a device. Revoking closes its
// broker connection at once and refuses it from then on; it is final.
func (s *Server) handleEnrollState(state fleet.EnrollState) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		en, err := s.setEnrollState(r, r.PathValue("id"), state, false)
		if err != nil {
			s.actionError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, en)
	})
}

// handleDeleteDevice forgets a device (DELETE /api/v1/devices/{id}): its
// record and enrollment go, its key is revoked, and the history records
// the deletion.
func (s *Server) handleDeleteDevice() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := s.deleteDevice(r, id, false); err != nil {
			s.actionError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
	})
}
