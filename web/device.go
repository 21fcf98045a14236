package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nuid"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/web/pages"
	"github.com/thinfleet/thinfleet/wire"
)

// timelineLength is how many events a device's page shows.
const timelineLength = 30

func (s *Server) handleClient() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := s.clientView(r, r.PathValue("id"))
		if errors.Is(err, store.ErrNotFound) {
			http.Error(w, "no device with that id", http.StatusNotFound)
			return
		}
		if err != nil {
			s.pageError(w, err)
			return
		}
		s.render(w, r, http.StatusOK, pages.Client(v))
	})
}

// clientView reads what a device's page shows. A device that has asked to
// enroll but not reported yet (one waiting for approval) has a page too;
// an id that is neither is store.ErrNotFound.
func (s *Server) clientView(r *http.Request, id string) (pages.ClientView, error) {
	ctx := r.Context()
	since := s.hub.Begin(ctx)
	d, err := s.opts.Store.Device(ctx, id)
	reported := err == nil
	d = s.hub.withSeen(d)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return pages.ClientView{}, err
	}
	var enrollment *fleet.Enrollment
	en, _, err := s.opts.Store.Enrollment(ctx, id)
	switch {
	case err == nil:
		enrollment = &en
	case !errors.Is(err, store.ErrNotFound):
		return pages.ClientView{}, err
	case !reported:
		return pages.ClientView{}, store.ErrNotFound
	}
	if !reported {
		d = fleet.Device{ID: id}
	}
	c, err := s.opts.Store.Catalog(ctx)
	if err != nil {
		return pages.ClientView{}, err
	}
	events, more, err := s.opts.Store.EventPage(ctx, fleet.EventFilter{Device: id}, 0, timelineLength)
	if err != nil {
		return pages.ClientView{}, err
	}
	v := pages.ClientView{
		Frame:    frame(r, "Client "+id, "clients", liveURL(since, "devices,catalog,history,enrollments", id)),
		Reported: reported, Device: d, Enrollment: enrollment,
		Mark: newVersions(c.Target).mark(d.Version), Target: c.Target,
		Events: events,
	}
	groups, err := s.hub.Groups(ctx)
	if err != nil {
		return pages.ClientView{}, err
	}
	m := memberOf(d, groups)
	v.Groups, v.Channel, v.Pin = m.Groups, m.Channel, m.pinView()
	if reported {
		rollouts, err := s.hub.Rollouts(ctx)
		if err != nil {
			return pages.ClientView{}, err
		}
		v.Plan, v.Hold = planView(d, fleet.Plan(d, c, groups, rollouts), time.Now())
		again := againPlan(d, c, groups, rollouts)
		v.OfferNote, v.OfferVersion = offerPageNotes[s.againNotice(d, again)], again.Release.Version
		if v.OfferNote == "" && !again.OK {
			v.OfferNote = "Nothing to offer: " + again.Why + "."
		}
	}
	if v.Revoked() {
		v.OfferNote = "The device is revoked."
	}
	if more {
		v.OlderEvents = historyURL(fleet.EventFilter{Device: id}, events[len(events)-1].Seq)
	}
	return v, nil
}

// offerPageNotes say on a device's page why offer again offers nothing
// (againNotice); "no-target" says the plan's why instead.
var offerPageNotes = map[string]string{
	"no-action":  "This server cannot publish offers.",
	"pinned":     "The device is pinned: it is offered the version of its pin; unpin it to offer another.",
	"up-to-date": "The device already runs the version it is offered.",
}

// againPlan is what an operator's offer again offers d: its plan, as if
// none of its installs had failed when it is held back or waits for its
// next try.
func againPlan(d fleet.Device, c fleet.Catalog, groups []fleet.Group, rollouts []fleet.Rollout) fleet.Target {
	plan := fleet.Plan(d, c, groups, rollouts)
	if plan.Retry {
		again := d
		again.OfferedAgain(plan.Release)
		plan = fleet.Plan(again, c, groups, rollouts)
	}
	return plan
}

// againNotice says why offer again offers d nothing with plan (againPlan):
// no-action, pinned, up-to-date or no-target; "" when it offers.
func (s *Server) againNotice(d fleet.Device, plan fleet.Target) string {
	switch {
	case s.opts.Conn == nil:
		return "no-action"
	case plan.Pinned:
		return "pinned"
	case !plan.OK && plan.Release.Version != "" && d.Version != "" && !wire.Newer(plan.Release.Version, d.Version) && !plan.Rollback:
		return "up-to-date"
	case !plan.OK:
		return "no-target"
	}
	return ""
}

// planView is what the device's page shows of its plan, and why the
// release it concerns is not offered now (empty when it is, or when the
// device runs it).
func planView(d fleet.Device, t fleet.Target, now time.Time) (*pages.PlanView, string) {
	v := &pages.PlanView{
		Version: t.Release.Version, OK: t.OK, Why: t.Why, Pinned: t.Pinned,
		Rollout: t.Rollout, Wave: t.Wave + 1, Rollback: t.Rollback, NotBefore: t.NotBefore,
	}
	if t.Rollout == "" {
		v.Wave = 0
	}
	moves := t.Release.Version != "" && (t.Rollback || wire.Newer(t.Release.Version, d.Version))
	v.Installed = t.Release.Version != "" && !moves
	switch {
	case !moves:
		return v, ""
	case !t.OK:
		return v, t.Why
	case t.NotBefore.After(now):
		return v, t.Why
	}
	return v, ""
}

// handleOfferAgain offers one device its plan (fleet.Plan) again, with
// Retry set so that the agent tries a version that failed before, clears
// the device's count of failed installs (it is no longer held back), and
// records the offer in the history. It answers with the device's page.
func (s *Server) handleOfferAgain() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		notice, err := s.offerAgain(r, id, false)
		switch {
		case errors.Is(err, store.ErrNotFound):
			http.Error(w, "no device with that id", http.StatusNotFound)
		case err != nil:
			s.pageError(w, err)
		default:
			http.Redirect(w, r, pages.ClientURL(id)+"?notice="+notice, http.StatusSeeOther)
		}
	})
}

// handleOfferAgainAPI is offer again for the API (POST
// /api/v1/devices/{id}/offer): 200 with the version offered, 404 for an
// unknown device, 409 when there is nothing to offer it.
func (s *Server) handleOfferAgainAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		notice, plan, err := s.offerAgainPlan(r, id, false)
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusNotFound, "no device with that id")
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, err.Error())
		case notice == "no-target":
			writeError(w, http.StatusConflict, offerNotices[notice]+": "+plan.Why)
		case notice != "offered":
			writeError(w, http.StatusConflict, offerNotices[notice])
		default:
			writeJSON(w, http.StatusOK, map[string]any{"id": id, "offered": plan.Release.Version})
		}
	})
}

// offerAgain is offerAgainPlan without the plan.
func (s *Server) offerAgain(r *http.Request, id string, bulk bool) (string, error) {
	notice, _, err := s.offerAgainPlan(r, id, bulk)
	return notice, err
}

// offerAgainPlan offers device id its plan (fleet.Plan: its rollout,
// channel or the catalog's target) again, as an operator asked, and
// returns the notice to show (offered, no-action, no-target, up-to-date
// or pinned: a pinned device is offered what its pin says by the
// decision, never from here) with the plan. The operator's offer clears
// the device's failed installs of the release (it is no longer held
// back) and goes out whatever the maintenance window or the rollout's
// MaxConcurrent say; a rollout's hold on its release still stands. An
// offer made is recorded in the audit log (device.offer-again).
func (s *Server) offerAgainPlan(r *http.Request, id string, bulk bool) (string, fleet.Target, error) {
	ctx := r.Context()
	d, err := s.opts.Store.Device(ctx, id)
	if err != nil {
		return "", fleet.Target{}, err
	}
	c, err := s.opts.Store.Catalog(ctx)
	if err != nil {
		return "", fleet.Target{}, err
	}
	groups, err := s.opts.Store.Groups(ctx)
	if err != nil {
		return "", fleet.Target{}, err
	}
	rollouts, err := s.opts.Store.Rollouts(ctx)
	if err != nil {
		return "", fleet.Target{}, err
	}
	plan := againPlan(d, c, groups, rollouts)
	if notice := s.againNotice(d, plan); notice != "" {
		return notice, plan, nil
	}
	target := plan.Release
	// The failures so far no longer hold the device back: the decision
	// tries it again on its own if this install fails too.
	_, err = s.opts.Store.UpdateDevice(ctx, id, func(d *fleet.Device) error {
		if d.FirstSeen.IsZero() && d.LastSeen.IsZero() && d.Install == nil {
			return store.ErrUnchanged // deleted meanwhile
		}
		d.OfferedAgain(target)
		return nil
	})
	if err != nil {
		return "", plan, err
	}
	if err := s.offer(r, id, plan); err != nil {
		return "", plan, err
	}
	s.audit(r, "device.offer-again", id, bulkDetail(bulk, target.Version))
	return "offered", plan, nil
}

func (s *Server) offer(r *http.Request, id string, plan fleet.Target) error {
	rel := plan.Release
	now := time.Now().UTC()
	o := wire.Offer{
		ID: nuid.Next(), Name: rel.Name, Version: rel.Version, SHA256: rel.SHA256, Size: rel.Size,
		Command: rel.Command, URL: s.downloadURL(rel.File, now),
		Time: now, Retry: true, Rollback: plan.Rollback, Signature: rel.Signature,
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("release %s is not offerable: %w", rel.Version, err)
	}
	data, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode offer: %w", err)
	}
	if err := s.opts.Conn.Publish(wire.OfferSubject(id), data); err != nil {
		return fmt.Errorf("publish offer: %w", err)
	}
	detail := "offered again by an operator"
	if plan.Rollback {
		detail += ", a rollback"
	}
	e := fleet.Event{Time: o.Time, Device: id, Event: fleet.EventOffered, Version: rel.Version, Detail: detail}
	if err := s.opts.Store.AppendEvent(r.Context(), e, "offered-again-"+o.ID); err != nil {
		return err
	}
	s.log.Info("offered again", "device", id, "version", rel.Version, "offer", o.ID, "rollback", plan.Rollback, "why", plan.Why, "remote", r.RemoteAddr)
	return nil
}

// historyURL is the Update history page for f, before an event.
func historyURL(f fleet.EventFilter, before uint64) string {
	v := url.Values{}
	for k, s := range map[string]string{"device": f.Device, "event": string(f.Kind), "version": f.Version} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if before != 0 {
		v.Set("before", strconv.FormatUint(before, 10))
	}
	if len(v) == 0 {
		return "/history"
	}
	return "/history?" + v.Encode()
}
