package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
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
		OfferNote: s.offerNote(d, c), Events: events,
	}
	if t, ok := c.TargetRelease(); ok && wire.Newer(t.Version, d.Version) {
		v.Hold = d.HoldBack(t, time.Now()).Reason
	}
	if v.Revoked() {
		v.OfferNote = "The device is revoked."
	}
	if more {
		v.OlderEvents = historyURL(fleet.EventFilter{Device: id}, events[len(events)-1].Seq)
	}
	return v, nil
}

// handleOfferAgain offers the catalog's target to one device again, with
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
		notice, err := s.offerAgain(r, id, false)
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusNotFound, "no device with that id")
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, err.Error())
		case notice != "offered":
			writeError(w, http.StatusConflict, offerNotices[notice])
		default:
			c, _ := s.opts.Store.Catalog(r.Context())
			writeJSON(w, http.StatusOK, map[string]any{"id": id, "offered": c.Target})
		}
	})
}

// offerAgain offers the target to device id again, as an operator asked,
// and returns the notice to show: offered, no-action, no-target,
// up-to-date or pinned (a pinned device is offered what its pin says, by
// the decision, never the target from here). An offer made is recorded
// in the audit log (device.offer-again).
func (s *Server) offerAgain(r *http.Request, id string, bulk bool) (string, error) {
	ctx := r.Context()
	d, err := s.opts.Store.Device(ctx, id)
	if err != nil {
		return "", err
	}
	c, err := s.opts.Store.Catalog(ctx)
	if err != nil {
		return "", err
	}
	target, ok := c.TargetRelease()
	switch {
	case s.opts.Conn == nil:
		return "no-action", nil
	case !ok:
		return "no-target", nil
	case d.Pin != nil || s.groupPinned(ctx, d):
		return "pinned", nil
	case !wire.Newer(target.Version, d.Version):
		return "up-to-date", nil
	}
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
		return "", err
	}
	if err := s.offer(r, id, target); err != nil {
		return "", err
	}
	s.audit(r, "device.offer-again", id, bulkDetail(bulk, target.Version))
	return "offered", nil
}

func (s *Server) offer(r *http.Request, id string, rel fleet.Release) error {
	now := time.Now().UTC()
	o := wire.Offer{
		ID: nuid.Next(), Name: rel.Name, Version: rel.Version, SHA256: rel.SHA256, Size: rel.Size,
		Command: rel.Command, URL: s.downloadURL(rel.File, now),
		Time: now, Retry: true, Signature: rel.Signature,
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
	e := fleet.Event{Time: o.Time, Device: id, Event: fleet.EventOffered, Version: rel.Version, Detail: "offered again by an operator"}
	if err := s.opts.Store.AppendEvent(r.Context(), e, "offered-again-"+o.ID); err != nil {
		return err
	}
	s.log.Info("offered again", "device", id, "version", rel.Version, "offer", o.ID, "remote", r.RemoteAddr)
	return nil
}

// groupPinned reports whether a group that d is in pins its devices.
func (s *Server) groupPinned(ctx context.Context, d fleet.Device) bool {
	groups, err := s.hub.Groups(ctx)
	if err != nil {
		return true // unknown: better not to move it
	}
	return slices.ContainsFunc(groups, func(g fleet.Group) bool { return g.Pin != nil && g.Selector.Matches(d) })
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
