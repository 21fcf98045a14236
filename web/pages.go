package web

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/a-h/templ"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web/pages"
)

// render writes a page. It renders into memory first, so a failure is a
// clean error page rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	var buf bytes.Buffer
	if err := c.Render(r.Context(), &buf); err != nil {
		s.pageError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) pageError(w http.ResponseWriter, err error) {
	s.log.Error("page failed", "err", err)
	http.Error(w, "internal error; see the server log", http.StatusInternalServerError)
}

// notices are the messages an action may leave for the page it leads to;
// the URL names one, so no text from a URL reaches the page.
var notices = map[string]string{
	"offered":    "The target was offered again; the device installs it if it is listening.",
	"up-to-date": "Nothing offered: the device already runs the target.",
	"no-target":  "Nothing offered: there is no target version.",
	"no-action":  "Nothing offered: this server cannot publish offers.",
	"pinned":     "Nothing offered: the device is pinned, and is offered the version of its pin; unpin it to offer the target.",
	"approved":   "Approved: the agent gets its credentials the next time it asks, within a few seconds, and then shows up alive.",
	"revoked":    "Revoked: the broker closed the device's connection and refuses it from now on.",
}

// snapshot reads what most pages show, every device and the catalog,
// after taking the live stream's starting point, so that a change in
// between reaches the page's stream rather than being lost.
func (s *Server) snapshot(ctx context.Context) (since uint64, devices []fleet.Device, c fleet.Catalog, err error) {
	since = s.hub.Begin(ctx)
	if devices, err = s.hub.Devices(ctx); err != nil {
		return 0, nil, fleet.Catalog{}, err
	}
	c, err = s.opts.Store.Catalog(ctx)
	return since, devices, c, err
}

func frame(r *http.Request, title, nav, live string) pages.Frame {
	return pages.Frame{Title: title, Nav: nav, Live: live, Now: time.Now(), Notice: notices[r.URL.Query().Get("notice")]}
}

func (s *Server) handleOverview() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		since, devices, c, err := s.snapshot(ctx)
		if err != nil {
			s.pageError(w, err)
			return
		}
		// Ten rows of the history: an install is up to six events.
		events, _, err := s.opts.Store.EventPage(ctx, fleet.EventFilter{}, 0, 60)
		if err != nil {
			s.pageError(w, err)
			return
		}
		ens, err := s.hub.Enrollments(ctx)
		if err != nil {
			s.pageError(w, err)
			return
		}
		pending, _ := pendingAndRevoked(ens)
		rs, err := s.hub.Rollouts(ctx)
		if err != nil {
			s.pageError(w, err)
			return
		}
		vs := newVersions(c.Target)
		rel, relOK := c.TargetRelease()
		now := time.Now()
		v := pages.OverviewView{
			Frame:   frame(r, "Overview", "overview", liveURL(since, "devices,catalog,history,enrollments,rollouts", "")),
			Pending: len(pending),
			Total:   len(devices), Target: c.Target, Versions: vs.counts(devices), Events: events,
		}
		for i, ro := range rs { // newest first
			switch ro.State {
			case fleet.RolloutRunning:
				v.Rollouts++
			case fleet.RolloutPaused:
				v.Rollouts++
				v.RolloutsPaused++
				if v.Paused == nil {
					v.Paused = &rs[i]
				}
			}
		}
		for _, d := range devices {
			if d.Alive {
				v.Alive++
			}
			switch vs.mark(d.Version) {
			case pages.UpToDate:
				v.UpToDate++
			case pages.Outdated:
				v.Outdated++
			}
			if pages.Running(d.Install) {
				v.Installing = append(v.Installing, d)
			}
			if installIs(d, "failed", rel, relOK, now) {
				v.Failed++
			}
			if installIs(d, "held", rel, relOK, now) {
				v.Held++
			}
		}
		s.render(w, r, http.StatusOK, pages.Overview(v))
	})
}

func (s *Server) handleClients() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := s.clientsPage(r)
		if err != nil {
			s.pageError(w, err)
			return
		}
		s.render(w, r, http.StatusOK, pages.Clients(v))
	})
}

// clientsPage is the Clients page r asks for (its query chooses the
// devices), from the hub's copies.
func (s *Server) clientsPage(r *http.Request) (pages.ClientsView, error) {
	ctx := r.Context()
	since, devices, c, err := s.snapshot(ctx)
	if err != nil {
		return pages.ClientsView{}, err
	}
	ens, err := s.hub.Enrollments(ctx)
	if err != nil {
		return pages.ClientsView{}, err
	}
	groups, err := s.hub.Groups(ctx)
	if err != nil {
		return pages.ClientsView{}, err
	}
	return clientsView(r, since, devices, ens, c, groups), nil
}

// clientsView selects, sorts and cuts one page of devices.
// The waiting devices are listed above them, at most pages.MaxPending.
func clientsView(r *http.Request, since uint64, devices []fleet.Device, ens []fleet.Enrollment, c fleet.Catalog, groups []fleet.Group) pages.ClientsView {
	target := c.Target
	rel, relOK := c.TargetRelease()
	now := time.Now()
	q := pages.ParseClientsQuery(r.URL.Query())
	vs := newVersions(target)
	f := newDeviceFilter(q, groups)
	sel := selectClients(devices, q, vs, c, f)
	pending, revoked := pendingAndRevoked(ens)
	v := pages.ClientsView{
		Frame:   frame(r, "Clients", "clients", liveURL(since, "devices,catalog,enrollments", "")),
		Pending: pending[:min(len(pending), pages.MaxPending)], PendingMore: max(0, len(pending)-pages.MaxPending),
		Query: q, Matching: len(sel), Total: len(devices), Target: target,
		Pages:       max(1, (len(sel)+q.Per-1)/q.Per),
		FilterError: f.err,
	}
	v.Query.Page = min(q.Page, v.Pages)
	from := (v.Query.Page - 1) * q.Per
	for _, d := range sel[from:min(from+q.Per, len(sel))] {
		m := memberOf(*d, groups)
		row := pages.ClientRow{Device: *d, Mark: vs.mark(d.Version), Revoked: revoked[d.ID], Groups: m.Groups, Channel: m.Channel, Pin: m.pinView()}
		row.Install, row.Why = installNote(*d, rel, relOK, now)
		v.Rows = append(v.Rows, row)
	}
	for _, g := range groups {
		v.Groups = append(v.Groups, g.Name)
	}
	// The bulk action just done, as its redirect says.
	if a := r.URL.Query().Get("bulk"); pages.BulkActions[a] != "" {
		n, _ := strconv.Atoi(r.URL.Query().Get("done"))
		v.Bulk = &pages.BulkResult{Action: a, Done: max(0, n)}
	}
	for _, r := range c.Releases {
		v.Releases = append(v.Releases, r.Version)
	}
	for _, c := range vs.counts(devices) {
		if c.Version != "" {
			v.Versions = append(v.Versions, c.Version)
		}
	}
	return v
}
