package web

// Device approval on the dashboard: the hub's copy of the enrollments,
// and the Approve and Revoke actions of the Clients and device pages.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/web/pages"
)

// applyEnrollment takes one change of the enrollments watch: the initial
// records, then the Loaded mark, then each change.
func (h *hub) applyEnrollment(c store.Change[fleet.Enrollment]) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch first, changed := h.enrollments.apply(c); {
	case first:
		h.startedLocked()
	case changed && c.Loaded:
		h.notifyLocked(topicEnrollments, "") // a watch started again
	case changed:
		h.notifyLocked(topicEnrollments, c.Key)
	}
	return nil
}

// Enrollments returns every enrollment, sorted by id. The slice is
// shared: the caller must not change it.
func (h *hub) Enrollments(ctx context.Context) ([]fleet.Enrollment, error) {
	return listOf(ctx, h, &h.enrollments, h.store.Enrollments)
}

func byEnrollID(a, b fleet.Enrollment) int { return strings.Compare(a.ID, b.ID) }

// pendingAndRevoked sorts out what the pages show of the enrollments: who
// waits for approval, longest waiting first, and who is revoked.
func pendingAndRevoked(ens []fleet.Enrollment) (pending []fleet.Enrollment, revoked map[string]bool) {
	revoked = map[string]bool{}
	for _, en := range ens {
		switch en.State {
		case fleet.EnrollPending:
			pending = append(pending, en)
		case fleet.EnrollRevoked:
			revoked[en.ID] = true
		}
	}
	slices.SortStableFunc(pending, func(a, b fleet.Enrollment) int { return a.Requested.Compare(b.Requested) })
	return pending, revoked
}

// handleEnrollAction approves or revokes a device from a page, then goes
// back to the page the form was on. A revocation must come with its box
// ticked (confirm=yes); without it nothing changes and the device's page
// says why.
func (s *Server) handleEnrollAction(state fleet.EnrollState) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		unconfirmed := ""
		if state == fleet.EnrollRevoked {
			unconfirmed = "Nothing revoked: tick the box to confirm that this device will be disconnected and refused."
		}
		id, ok := s.actionForm(w, r, unconfirmed)
		if !ok {
			return
		}
		en, err := s.setEnrollState(r, id, state, false)
		switch {
		case statusOf(err) == http.StatusNotFound:
			http.Error(w, "no device with that id has asked to enroll", http.StatusNotFound)
			return
		case err != nil:
			s.clientWithError(w, r, id, http.StatusConflict, "Nothing changed: "+err.Error()+".")
			return
		}
		http.Redirect(w, r, backURL(r.PostForm.Get("back"), id, string(en.State)), http.StatusSeeOther)
	})
}

// clientWithError answers with the device's page and why the action was
// not done.
func (s *Server) clientWithError(w http.ResponseWriter, r *http.Request, id string, status int, msg string) {
	v, err := s.clientView(r, id)
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, "no device with that id", http.StatusNotFound)
		return
	}
	if err != nil {
		s.pageError(w, err)
		return
	}
	v.EnrollError = msg
	s.render(w, r, status, pages.Client(v))
}

// backURL is the page an action returns to, with its notice: the Clients
// page (with its query) or the device's page, never anywhere else.
func backURL(back, id, notice string) string {
	u, err := url.Parse(localPath(back))
	if err != nil || (u.Path != "/clients" && u.EscapedPath() != pages.ClientURL(id)) {
		u = &url.URL{Path: "/clients/" + id}
	}
	q := u.Query()
	q.Set("notice", notice)
	u.RawQuery, u.Fragment = q.Encode(), ""
	return u.String()
}

// handleDeleteAction deletes a device from its page, with its box ticked
// (confirm=yes), then goes to the clients page.
func (s *Server) handleDeleteAction() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := s.actionForm(w, r, "Nothing deleted: tick the box to confirm that this device's records will be removed.")
		if !ok {
			return
		}
		err := s.deleteDevice(r, id, false)
		switch {
		case statusOf(err) == http.StatusNotFound:
			http.Error(w, "no device with that id", http.StatusNotFound)
			return
		case err != nil:
			s.clientWithError(w, r, id, http.StatusServiceUnavailable, "Nothing deleted: "+err.Error()+".")
			return
		}
		http.Redirect(w, r, "/clients", http.StatusSeeOther)
	})
}

// actionForm reads the form of an action on a device's page and returns
// the device's id. When unconfirmed is not empty the action needs its box
// ticked (confirm=yes): without it the page says unconfirmed and ok is
// false, as it is for a form that does not parse.
func (s *Server) actionForm(w http.ResponseWriter, r *http.Request, unconfirmed string) (id string, ok bool) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return "", false
	}
	id = r.PathValue("id")
	if unconfirmed != "" && r.PostForm.Get("confirm") != "yes" {
		s.clientWithError(w, r, id, http.StatusBadRequest, unconfirmed)
		return "", false
	}
	return id, true
}
