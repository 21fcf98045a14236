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
// Retry set so that the agent tries a version that failed before, and
// records the offer in the history. It answers with the device's page.
func (s *Server) handleOfferAgain() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := r.PathValue("id")
		back := func(notice string) {
			http.Redirect(w, r, pages.ClientURL(id)+"?notice="+notice, http.StatusSeeOther)
		}
		d, err := s.opts.Store.Device(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			http.Error(w, "no device with that id", http.StatusNotFound)
			return
		}
		if err != nil {
			s.pageError(w, err)
			return
		}
		c, err := s.opts.Store.Catalog(ctx)
		if err != nil {
			s.pageError(w, err)
			return
		}
		target, ok := c.TargetRelease()
		switch {
		case s.opts.Conn == nil:
			back("no-action")
			return
		case !ok:
			back("no-target")
			return
		case !wire.Newer(target.Version, d.Version):
			back("up-to-date")
			return
		}
		// The failures so far no longer hold the device back: the
		// decision tries it again on its own if this install fails too.
		_, err = s.opts.Store.UpdateDevice(ctx, id, func(d *fleet.Device) error {
			if d.Install == nil && d.Retries == nil && d.Version == "" && d.LastSeen.IsZero() {
				return store.ErrUnchanged // deleted meanwhile
			}
			d.OfferedAgain(target)
			return nil
		})
		if err != nil {
			s.pageError(w, err)
			return
		}
		if err := s.offer(r, id, target); err != nil {
			s.pageError(w, err)
			return
		}
		back("offered")
	})
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
