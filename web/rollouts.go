package web

// Rollouts on the web side: the hub's copy of them, and the operator's
// actions on them, written once for the API and the pages alike. The
// rollout service (services/rollout) moves a rollout through its waves
// and writes its counts; the web only reads those and writes what an
// operator asks for, through fleet's operations.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// applyRollout takes one change of the rollouts watch: the initial
// records, then the Loaded mark, then each change.
func (h *hub) applyRollout(c store.Change[fleet.Rollout]) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch first, changed := h.rollouts.apply(c); {
	case first:
		h.startedLocked()
	case changed:
		h.notifyLocked(topicRollouts, "")
	}
	return nil
}

// Rollouts returns every rollout, newest first. The slice and the
// rollouts' members and samples are shared: the caller must not change
// them.
func (h *hub) Rollouts(ctx context.Context) ([]fleet.Rollout, error) {
	return listOf(ctx, h, &h.rollouts, h.store.Rollouts)
}

func newestRolloutFirst(a, b fleet.Rollout) int {
	if c := b.Created.Compare(a.Created); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// Rollout returns one rollout from the hub's copy, or store.ErrNotFound;
// it reads the store until the copy is loaded.
func (h *hub) Rollout(ctx context.Context, id string) (fleet.Rollout, error) {
	h.ensure()
	if !h.wait(ctx) {
		if err := ctx.Err(); err != nil {
			return fleet.Rollout{}, err
		}
		return h.store.Rollout(ctx, id)
	}
	h.mu.Lock()
	r, ok := h.rollouts.get(id)
	h.mu.Unlock()
	if !ok {
		return fleet.Rollout{}, store.ErrNotFound
	}
	return r, nil
}

// sawWrite bounds how long an operator's action waits for the hub to see
// what it wrote.
const sawWrite = 3 * time.Second

// awaitRollout waits until the hub's copy of rollout id satisfies done
// (ok is false when the hub has none), within sawWrite: an action answers
// once what it wrote shows, so the page it leads to, and the next request
// to the API, show it too. It gives up silently: the copy follows the
// bucket within moments, and the live stream brings the change anyway.
func (h *hub) awaitRollout(ctx context.Context, id string, done func(r fleet.Rollout, ok bool) bool) {
	h.ensure()
	if !h.wait(ctx) {
		return // the pages read the store until the hub is ready
	}
	h.mu.Lock()
	sub := &subscriber{topics: topicRollouts, ch: make(chan struct{}, 1)}
	h.subs[sub] = struct{}{}
	h.mu.Unlock()
	defer h.unsubscribe(sub)
	t := time.NewTimer(sawWrite)
	defer t.Stop()
	for {
		h.mu.Lock()
		r, ok := h.rollouts.get(id)
		h.mu.Unlock()
		if done(r, ok) {
			return
		}
		select {
		case <-sub.ch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		case <-h.ctx.Done():
			return
		}
	}
}

// awaitWritten waits until the hub's copy of w's rollout is w or later.
func (h *hub) awaitWritten(ctx context.Context, w fleet.Rollout) {
	h.awaitRollout(ctx, w.ID, func(r fleet.Rollout, ok bool) bool { return ok && !r.Updated.Before(w.Updated) })
}

// Catalog returns the hub's copy of the catalog, or the stored one until
// the copy is loaded.
func (h *hub) Catalog(ctx context.Context) (fleet.Catalog, error) {
	h.ensure()
	if h.wait(ctx) {
		h.mu.Lock()
		c := h.catalog
		h.mu.Unlock()
		if c != nil {
			return *c, nil
		}
	}
	return h.store.Catalog(ctx)
}

// inputError is an operator's request that cannot be done as asked: the
// API answers it with 400, a page shows it by its form.
type inputError struct{ error }

func badInput(format string, args ...any) error { return inputError{fmt.Errorf(format, args...)} }

// rolloutStatus is the HTTP status of an error of the rollout operations.
func rolloutStatus(err error) int {
	var in inputError
	switch {
	case errors.As(err, &in):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrExists), errors.Is(err, fleet.ErrRolloutState):
		return http.StatusConflict
	}
	return http.StatusServiceUnavailable
}

// createRollout checks spec, writes the new rollout and records it in the
// audit log. A spec without an id gets one made of its version ("v1-3-0",
// "v1-3-0-2" when that is taken).
func (s *Server) createRollout(r *http.Request, spec fleet.RolloutSpec) (fleet.Rollout, error) {
	ctx := r.Context()
	if spec.Group != "" {
		if !spec.Selector.Empty() {
			return fleet.Rollout{}, badInput("a rollout takes a group or a selector, not both")
		}
		if err := fleet.ValidateGroupName(spec.Group); err != nil {
			return fleet.Rollout{}, badInput("rollout group: %w", err)
		}
		if _, err := s.opts.Store.Group(ctx, spec.Group); errors.Is(err, store.ErrNotFound) {
			return fleet.Rollout{}, badInput("there is no group %q", spec.Group)
		} else if err != nil {
			return fleet.Rollout{}, err
		}
	}
	if spec.ID == "new" {
		return fleet.Rollout{}, badInput(`rollout id "new" is taken by the dashboard's New rollout form; choose another`)
	}
	generated := spec.ID == ""
	if generated {
		spec.ID = rolloutID(spec.Version)
	}
	var ro fleet.Rollout
	for n := 1; ; n++ {
		id := spec.ID
		if generated && n > 1 {
			id = fmt.Sprintf("%s-%d", spec.ID, n)
		}
		var err error
		ro, err = fleet.NewRollout(fleet.RolloutSpec{
			ID: id, Version: spec.Version, Selector: spec.Selector, Group: spec.Group,
			Waves: spec.Waves, MaxConcurrent: spec.MaxConcurrent,
		}, who(r), time.Now())
		if err != nil {
			return fleet.Rollout{}, inputError{err}
		}
		err = s.opts.Store.CreateRollout(ctx, ro)
		if errors.Is(err, store.ErrExists) && generated && n < 100 {
			continue
		}
		if err != nil {
			return fleet.Rollout{}, err
		}
		break
	}
	s.log.Info("rollout created by an operator", "rollout", ro.ID, "version", ro.Version, "remote", r.RemoteAddr)
	s.audit(r, "rollout.create", ro.ID, fmt.Sprintf("version %s to %s, waves %s", ro.Version, scopeText(ro), wavesText(ro.Waves)))
	s.hub.awaitWritten(ctx, ro)
	return ro, nil
}

// rolloutID makes a rollout id of a version: "v" and the version in
// ValidateGroupName's alphabet.
func rolloutID(version string) string {
	var b strings.Builder
	b.WriteString("v")
	for _, c := range strings.ToLower(version) {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_', c == '-':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()[:min(b.Len(), 56)]
}

// The operator's actions on a rollout, as the API's paths and the
// audit log name them.
const (
	actionPause    = "pause"
	actionResume   = "resume"
	actionAbort    = "abort"
	actionRollBack = "rollback"
	actionRelease  = "release"
)

// rolloutAction does action on the rollout id and records it in the audit
// log. arg is the reason of a pause, abort or rollback (empty: a default
// one naming the operator), and the version of a release change.
func (s *Server) rolloutAction(r *http.Request, id, action, arg string) (fleet.Rollout, error) {
	arg = strings.TrimSpace(arg)
	if len(arg) > 200 {
		return fleet.Rollout{}, badInput("reason: at most 200 characters")
	}
	by := "an operator (" + via(r) + ")"
	if arg == "" {
		switch action {
		case actionPause:
			arg = "paused by " + by
		case actionAbort:
			arg = "aborted by " + by
		case actionRollBack:
			arg = "rolled back by " + by
		case actionRelease:
			return fleet.Rollout{}, badInput("release: name the version to roll out instead")
		}
	}
	var from string
	ro, err := s.opts.Store.UpdateRollout(r.Context(), id, func(ro *fleet.Rollout) error {
		now := time.Now()
		from = ro.Version
		switch action {
		case actionPause:
			return ro.Pause(arg, now)
		case actionResume:
			return ro.Resume(now)
		case actionAbort:
			return ro.Abort(arg, now)
		case actionRollBack:
			return ro.RollBack(arg, now)
		case actionRelease:
			if v, err := wire.CompareVersions(arg, ro.Version); err == nil && v == 0 && ro.State.Active() {
				return badInput("the rollout already rolls out %s", ro.Version)
			}
			err := ro.Retarget(arg, now)
			if err != nil && !errors.Is(err, fleet.ErrRolloutState) {
				return inputError{err}
			}
			return err
		}
		return badInput("no rollout action %q", action)
	})
	if err != nil {
		return fleet.Rollout{}, err
	}
	detail := ro.Reason
	switch action {
	case actionResume:
		detail = ""
	case actionRelease:
		detail = from + " → " + ro.Version
	}
	s.log.Info("rollout changed by an operator", "rollout", id, "action", action, "state", ro.State, "version", ro.Version, "remote", r.RemoteAddr)
	s.audit(r, "rollout."+action, id, detail)
	s.hub.awaitWritten(r.Context(), ro)
	return ro, nil
}

// deleteRollout removes a rollout that decides nothing more (completed,
// aborted or rolled back) and records it in the audit log.
func (s *Server) deleteRollout(r *http.Request, id string) error {
	ctx := r.Context()
	ro, err := s.opts.Store.Rollout(ctx, id)
	if err != nil {
		return err
	}
	if ro.State == fleet.RolloutRunning || ro.State == fleet.RolloutPaused {
		return fmt.Errorf("delete rollout %s: it is %s; abort it first: %w", id, ro.State, fleet.ErrRolloutState)
	}
	if err := s.opts.Store.DeleteRollout(ctx, id); err != nil {
		return err
	}
	s.log.Info("rollout deleted by an operator", "rollout", id, "remote", r.RemoteAddr)
	s.audit(r, "rollout.delete", id, fmt.Sprintf("%s, version %s", ro.State, ro.Version))
	s.hub.awaitRollout(ctx, id, func(_ fleet.Rollout, ok bool) bool { return !ok })
	return nil
}

// via says whether r came to the API or from the dashboard.
func via(r *http.Request) string {
	if r.Header.Get("Authorization") != "" {
		return "API"
	}
	return "dashboard"
}

// scopeText says which devices a rollout is for: "all devices", "group
// kiosks", "devices with site=berlin".
func scopeText(ro fleet.Rollout) string {
	switch {
	case ro.Group != "":
		return "group " + ro.Group
	case ro.Selector.Empty():
		return "all devices"
	}
	return "devices with " + ro.Selector.String()
}

// wavesText is a rollout's waves in ParseWaves' form: "canary:10,half:50,all:100".
func wavesText(waves []fleet.Wave) string {
	parts := make([]string, len(waves))
	for i, w := range waves {
		parts[i] = w.Name + ":" + waveTarget(w)
	}
	return strings.Join(parts, ",")
}

// waveTarget is which devices a wave reaches: "10%" or "[ring=canary]"
// (several labels separated by ";", as ParseWaves reads them).
func waveTarget(w fleet.Wave) string {
	if w.Selector != nil {
		return "[" + strings.ReplaceAll(w.Selector.String(), ",", ";") + "]"
	}
	return fmt.Sprintf("%d%%", w.Percent)
}
