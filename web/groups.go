package web

// Groups: the hub's copy of the groups bucket, and the API that reads and
// changes it (GET, PUT and DELETE /api/v1/groups[/{name}]).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// applyGroup takes one change of the groups watch: the initial records,
// then the Loaded mark, then each change. A group that changes may change
// the groups and channel of any device: the device streams hear of it too.
func (h *hub) applyGroup(c store.Change[fleet.Group]) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch first, changed := h.groups.apply(c); {
	case first:
		h.startedLocked()
	case changed:
		h.notifyLocked(topicGroups|topicDevices, "")
	}
	return nil
}

// Groups returns every group, sorted by name. The slice is shared: the
// caller must not change it.
func (h *hub) Groups(ctx context.Context) ([]fleet.Group, error) {
	return listOf(ctx, h, &h.groups, h.store.Groups)
}

func byGroupName(a, b fleet.Group) int { return strings.Compare(a.Name, b.Name) }

// GroupView is a group as the API shows it: the group and how many devices
// match it now.
type GroupView struct {
	fleet.Group
	Devices int `json:"devices"`
}

// groupViews counts the devices of each group.
func groupViews(groups []fleet.Group, devices []fleet.Device) []GroupView {
	out := make([]GroupView, len(groups))
	for i, g := range groups {
		out[i].Group = g
	}
	for i := range devices {
		for j := range out {
			if out[j].Selector.Matches(devices[i]) {
				out[j].Devices++
			}
		}
	}
	return out
}

// handleGroups lists every group (GET /api/v1/groups).
func (s *Server) handleGroups() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		groups, err := s.hub.Groups(r.Context())
		if err != nil {
			s.internalError(w, err)
			return
		}
		devices, err := s.hub.Devices(r.Context())
		if err != nil {
			s.internalError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"groups": groupViews(groups, devices)})
	})
}

// handleGroup shows one group (GET /api/v1/groups/{name}), read from the
// store: right after a PUT, it shows what was written.
func (s *Server) handleGroup() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, err := s.opts.Store.Group(r.Context(), r.PathValue("name"))
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, "no group called "+quoteName(r.PathValue("name")))
			return
		}
		if err != nil {
			s.internalError(w, err)
			return
		}
		s.writeGroup(w, r, g)
	})
}

func (s *Server) writeGroup(w http.ResponseWriter, r *http.Request, g fleet.Group) {
	devices, err := s.hub.Devices(r.Context())
	if err != nil {
		s.internalError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, groupViews([]fleet.Group{g}, devices)[0])
}

// GroupRequest is the body of PUT /api/v1/groups/{name}: the whole group,
// which replaces what was there.
type GroupRequest struct {
	// Selector is "k=v,k2=v2" or {"match":{"k":"v"},"ids":[...]}.
	Selector json.RawMessage `json:"selector"`
	Channel  string          `json:"channel,omitempty"`
	Pin      *PinRequest     `json:"pin,omitempty"`
	Window   *fleet.Window   `json:"window,omitempty"`
}

// PinRequest asks to pin a device or a group to a version.
type PinRequest struct {
	Version string `json:"version"`
	Reason  string `json:"reason,omitempty"`
}

// handlePutGroup creates or replaces a group (PUT /api/v1/groups/{name}).
func (s *Server) handlePutGroup() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req GroupRequest
		if !readJSON(w, r, &req) {
			return
		}
		g, err := s.setGroup(r, r.PathValue("name"), req)
		if err != nil {
			s.actionError(w, err)
			return
		}
		s.writeGroup(w, r, g)
	})
}

// setGroup checks req and writes it as the group called name, then
// records the action in the audit log (group.set).
func (s *Server) setGroup(r *http.Request, name string, req GroupRequest) (fleet.Group, error) {
	if err := fleet.ValidateGroupName(name); err != nil {
		return fleet.Group{}, badRequest("group " + err.Error())
	}
	if blank := strings.TrimSpace(string(req.Selector)); blank == "" || blank == "null" || blank == `""` {
		return fleet.Group{}, badRequest(`selector: required, "k=v,k2=v2" or {"match":{"k":"v"}} ("all" for every device)`)
	}
	sel, err := decodeSelector(req.Selector)
	if err != nil {
		return fleet.Group{}, badRequest(err.Error())
	}
	channel, err := parseChannel(req.Channel)
	if err != nil {
		return fleet.Group{}, badRequest(err.Error())
	}
	var pin *fleet.Pin
	if req.Pin != nil {
		if pin, err = s.newPin(r, *req.Pin); err != nil {
			return fleet.Group{}, err
		}
	}
	var window *fleet.Window
	if req.Window != nil {
		wv := *req.Window
		for i, d := range wv.Days {
			wv.Days[i] = strings.ToLower(strings.TrimSpace(d))
		}
		if err := wv.Validate(); err != nil {
			return fleet.Group{}, badRequest(err.Error())
		}
		window = &wv
	}
	now := time.Now().UTC()
	g, err := s.opts.Store.UpdateGroup(r.Context(), name, func(g *fleet.Group) error {
		if g.Created.IsZero() {
			g.Created = now
		}
		if pin != nil && g.Pin != nil && g.Pin.Version == pin.Version && g.Pin.Reason == pin.Reason {
			pin = g.Pin // the same pin, sent back with the rest: it keeps who set it and when
		}
		g.Selector, g.Channel, g.Pin, g.Window, g.Updated = sel, channel, pin, window, now
		return nil
	})
	if err != nil {
		return fleet.Group{}, err
	}
	s.audit(r, "group.set", name, groupDetail(g))
	s.log.Info("group set by an operator", "group", name, "detail", groupDetail(g), "remote", r.RemoteAddr)
	return g, nil
}

// groupDetail is the group in one line, for the audit log.
func groupDetail(g fleet.Group) string {
	parts := []string{"selector " + g.Selector.String()}
	if g.Channel != "" {
		parts = append(parts, "channel "+g.Channel)
	}
	if g.Pin != nil {
		parts = append(parts, "pinned to "+g.Pin.Version)
	}
	if g.Window != nil {
		parts = append(parts, "window "+g.Window.String())
	}
	return strings.Join(parts, ", ")
}

// handleDeleteGroup removes a group (DELETE /api/v1/groups/{name}). A
// group that a rollout still going on names is kept: 409.
func (s *Server) handleDeleteGroup() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := s.deleteGroup(r, name); err != nil {
			s.actionError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"name": name, "deleted": true})
	})
}

// deleteGroup removes the group called name, unless an active rollout
// names it, and records the action in the audit log (group.delete).
func (s *Server) deleteGroup(r *http.Request, name string) error {
	if _, err := s.opts.Store.Group(r.Context(), name); errors.Is(err, store.ErrNotFound) {
		return &actionErr{http.StatusNotFound, "no group called " + quoteName(name)}
	} else if err != nil {
		return err
	}
	rollouts, err := s.opts.Store.Rollouts(r.Context())
	if err != nil {
		return err
	}
	for _, ro := range rollouts {
		if ro.Group == name && ro.State.Active() {
			return &actionErr{http.StatusConflict, fmt.Sprintf("rollout %s (%s) rolls out to group %s: finish or delete it first", ro.ID, ro.State, name)}
		}
	}
	if err := s.opts.Store.DeleteGroup(r.Context(), name); err != nil {
		return err
	}
	s.audit(r, "group.delete", name, "")
	s.log.Info("group deleted by an operator", "group", name, "remote", r.RemoteAddr)
	return nil
}

// decodeSelector reads a selector as the API takes it: a string in
// fleet.ParseSelector's form ("site=berlin,ring=canary", "all"), or the
// JSON of a fleet.Selector ({"match":{...},"ids":[...]}), checked.
func decodeSelector(raw json.RawMessage) (fleet.Selector, error) {
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return fleet.ParseSelector(text)
	}
	var sel fleet.Selector
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sel); err != nil {
		return fleet.Selector{}, fmt.Errorf(`selector: want "k=v,k2=v2" or {"match":{"k":"v"},"ids":[...]}: %v`, err)
	}
	if err := sel.Match.Validate(); err != nil {
		return fleet.Selector{}, fmt.Errorf("selector: %w", err)
	}
	if len(sel.IDs) > maxBulk {
		return fleet.Selector{}, fmt.Errorf("selector: more than %d ids", maxBulk)
	}
	for _, id := range sel.IDs {
		if wire.ValidateID(id) != nil {
			return fleet.Selector{}, fmt.Errorf("selector: id %s: %w", quoteName(id), wire.ErrInvalidID)
		}
	}
	if len(sel.Match) == 0 {
		sel.Match = nil
	}
	return sel, nil
}

var channelName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// parseChannel checks a group's channel: empty (the default, stable), or
// 1 to 63 characters of a-z 0-9 . _ -, in any case.
func parseChannel(ch string) (string, error) {
	ch = strings.ToLower(strings.TrimSpace(ch))
	if ch != "" && !channelName.MatchString(ch) {
		return "", fmt.Errorf("channel %s: want 1 to 63 characters of a-z 0-9 . _ - starting with a letter or digit", quoteName(ch))
	}
	return ch, nil
}

// quoteName quotes a name from a request for a message, cut short.
func quoteName(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}
