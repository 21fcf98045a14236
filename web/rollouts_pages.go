package web

// The Rollouts pages: the list, one rollout with its actions, and the
// New rollout form. They read the hub's copies of the rollouts, the
// devices and the catalog; their forms go through the same operations
// as the API (rollouts.go).

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/web/pages"
)

func rolloutRow(ro fleet.Rollout) pages.RolloutRow {
	return pages.RolloutRow{Rollout: ro, Counts: ro.Counts(), Scope: scopeText(ro)}
}

func (s *Server) handleRolloutsPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		since := s.hub.Begin(r.Context())
		rs, err := s.hub.Rollouts(r.Context())
		if err != nil {
			s.pageError(w, err)
			return
		}
		v := pages.RolloutsView{Frame: frame(r, "Rollouts", "rollouts", liveURL(since, "rollouts", ""))}
		for _, ro := range rs {
			v.Rows = append(v.Rows, rolloutRow(ro))
		}
		s.render(w, r, http.StatusOK, pages.Rollouts(v))
	})
}

func (s *Server) handleRolloutPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := s.rolloutView(r, r.PathValue("id"))
		if errors.Is(err, store.ErrNotFound) {
			http.Error(w, "no rollout with that id", http.StatusNotFound)
			return
		}
		if err != nil {
			s.pageError(w, err)
			return
		}
		s.render(w, r, http.StatusOK, pages.Rollout(v))
	})
}

// rolloutView reads what a rollout's page shows.
func (s *Server) rolloutView(r *http.Request, id string) (pages.RolloutView, error) {
	ctx := r.Context()
	since := s.hub.Begin(ctx)
	ro, err := s.hub.Rollout(ctx, id)
	if err != nil {
		return pages.RolloutView{}, err
	}
	c, err := s.hub.Catalog(ctx)
	if err != nil {
		return pages.RolloutView{}, err
	}
	devices, err := s.hub.Devices(ctx)
	if err != nil {
		return pages.RolloutView{}, err
	}
	_, inCatalog := c.Release(ro.Version)
	v := pages.RolloutView{
		Frame:      frame(r, "Rollout "+ro.ID, "rollouts", liveURL(since, "rollouts,devices,catalog", "")),
		RolloutRow: rolloutRow(ro), InCatalog: inCatalog,
		MemberQuery: pages.ParseMemberQuery(r.URL.Query()),
		ByState:     map[pages.MemberState]int{},
	}
	for _, rel := range c.Releases {
		v.Versions = append(v.Versions, rel.Version)
	}
	members := memberRows(ro, devices, c)
	var shown []pages.MemberRow
	for _, m := range members {
		v.ByState[m.State]++
		if v.MemberQuery.State == "" || m.State == v.MemberQuery.State {
			shown = append(shown, m)
		}
	}
	v.Matching = len(shown)
	v.Pages = max(1, (len(shown)+pages.MembersPer-1)/pages.MembersPer)
	v.MemberQuery.Page = min(v.MemberQuery.Page, v.Pages)
	from := (v.MemberQuery.Page - 1) * pages.MembersPer
	v.Members = shown[from:min(from+pages.MembersPer, len(shown))]
	return v, nil
}

// memberRows are a rollout's devices as its page lists them: failed
// first, then in progress, waiting, succeeded; by wave, then id, within
// each. devices is sorted by id, as the hub gives it.
func memberRows(ro fleet.Rollout, devices []fleet.Device, c fleet.Catalog) []pages.MemberRow {
	vs := newVersions("")
	rel, relOK := c.Release(ro.Version)
	rows := make([]pages.MemberRow, 0, len(ro.Members))
	for id, m := range ro.Members {
		row := pages.MemberRow{ID: id, From: m.From}
		if m.Wave >= 0 && m.Wave < len(ro.Waves) {
			row.Wave = ro.Waves[m.Wave].Name
		}
		i, found := slices.BinarySearchFunc(devices, id, func(d fleet.Device, id string) int { return strings.Compare(d.ID, id) })
		if !found {
			row.State, row.Detail = pages.MemberGone, "no longer in the fleet"
			rows = append(rows, row)
			continue
		}
		d := &devices[i]
		row.Known, row.Alive, row.Version = true, d.Alive, d.Version
		row.State, row.Detail = memberState(d, ro, m.Wave, rel, relOK, vs)
		if row.State == pages.MemberInProgress {
			row.Progress = d.Install
		}
		rows = append(rows, row)
	}
	order := map[pages.MemberState]int{}
	for i, st := range pages.MemberStates {
		order[st] = i
	}
	waveOf := func(r pages.MemberRow) int { return ro.Members[r.ID].Wave }
	slices.SortFunc(rows, func(a, b pages.MemberRow) int {
		return cmp.Or(cmp.Compare(order[a.State], order[b.State]), cmp.Compare(waveOf(a), waveOf(b)), strings.Compare(a.ID, b.ID))
	})
	return rows
}

// memberState says how device d, in wave of rollout ro, stands with the
// rollout's release (rel, when the catalog has it), and why in one line.
// It counts as the rollout service does (services/rollout, count): a
// device that runs the release or a newer one succeeded; one whose
// install of it failed, or that is held back from it, failed.
func memberState(d *fleet.Device, ro fleet.Rollout, wave int, rel fleet.Release, relOK bool, vs *versions) (pages.MemberState, string) {
	in := d.Install
	ours := in != nil && vs.compare(in.Version, ro.Version) == 0
	switch {
	case d.Version != "" && vs.parse(d.Version) != nil && vs.compare(d.Version, ro.Version) >= 0:
		return pages.MemberSucceeded, ""
	case d.Pin != nil:
		detail := "pinned to " + d.Pin.Version
		if d.Pin.Reason != "" {
			detail += ": " + d.Pin.Reason
		}
		return pages.MemberPinned, detail
	case relOK && d.Retries.For(rel) && d.Retries.HeldBack:
		return pages.MemberFailed, fmt.Sprintf("held back after %d failed installs", d.Retries.Failures)
	case ours && d.FailedInstall():
		return pages.MemberFailed, in.Detail
	case ours && pages.Running(in):
		return pages.MemberInProgress, string(in.State)
	case wave > ro.Wave:
		return pages.MemberWaiting, "its wave is not open yet"
	case ro.State == fleet.RolloutPaused:
		return pages.MemberWaiting, "the rollout is paused"
	case !d.Alive:
		return pages.MemberWaiting, "offered once it is alive"
	}
	return pages.MemberWaiting, ""
}

// rolloutNotices are what a rollout's page says after an action.
var rolloutNotices = map[string]string{
	actionPause:    "Paused: nothing more is offered until you resume.",
	actionResume:   "Resumed: the open waves are offered the release again.",
	actionAbort:    "Aborted: nothing more is offered, and the devices not reached keep their version.",
	actionRollBack: "Rolling back: every device the rollout moved is offered the version it ran before.",
	actionRelease:  "Release changed: the waves count the new release afresh.",
	"created":      "Rollout started: its first wave is offered the release.",
	"deleted":      "Rollout deleted.",
}

func init() {
	for k, v := range rolloutNotices {
		notices["rollout-"+k] = v
	}
}

// rolloutURLNotice is the rollout's page with a notice.
func rolloutURLNotice(id, notice string) string {
	return pages.RolloutURL(id) + "?" + url.Values{"notice": {"rollout-" + notice}}.Encode()
}

// handleRolloutActionForm does an action from a rollout's page, then
// goes back to it. Abort, roll back and delete must come with their box
// ticked (confirm=yes); without it nothing changes and the page says why.
func (s *Server) handleRolloutActionForm(action string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		id := r.PathValue("id")
		unconfirmed := map[string]string{
			actionAbort:    "Nothing aborted: tick the box to confirm that the rollout stops for good.",
			actionRollBack: "Nothing rolled back: tick the box to confirm that the devices go back to the version they ran before.",
			"delete":       "Nothing deleted: tick the box to confirm that this rollout is forgotten.",
		}[action]
		if unconfirmed != "" && r.PostForm.Get("confirm") != "yes" {
			s.rolloutWithError(w, r, id, http.StatusBadRequest, unconfirmed)
			return
		}
		if action == "delete" {
			if err := s.deleteRollout(r, id); err != nil {
				s.rolloutWithError(w, r, id, rolloutStatus(err), "Nothing deleted: "+err.Error()+".")
				return
			}
			http.Redirect(w, r, "/rollouts?notice=rollout-deleted", http.StatusSeeOther)
			return
		}
		arg := r.PostForm.Get("reason")
		if action == actionRelease {
			arg = r.PostForm.Get("version")
		}
		if _, err := s.rolloutAction(r, id, action, arg); err != nil {
			s.rolloutWithError(w, r, id, rolloutStatus(err), "Nothing changed: "+err.Error()+".")
			return
		}
		http.Redirect(w, r, rolloutURLNotice(id, action), http.StatusSeeOther)
	})
}

// rolloutWithError answers with the rollout's page and why the action was
// not done.
func (s *Server) rolloutWithError(w http.ResponseWriter, r *http.Request, id string, status int, msg string) {
	v, err := s.rolloutView(r, id)
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, "no rollout with that id", http.StatusNotFound)
		return
	}
	if err != nil {
		s.pageError(w, err)
		return
	}
	v.ActionError = msg
	s.render(w, r, status, pages.Rollout(v))
}

func (s *Server) handleNewRolloutPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.hub.Catalog(r.Context())
		if err != nil {
			s.pageError(w, err)
			return
		}
		// The target is what most rollouts roll out; the form starts there.
		v, err := s.newRolloutView(r, pages.RolloutForm{Version: c.Target, Success: "90", Error: "20"})
		if err != nil {
			s.pageError(w, err)
			return
		}
		s.render(w, r, http.StatusOK, pages.NewRollout(v))
	})
}

// newRolloutView is the New rollout form holding f.
func (s *Server) newRolloutView(r *http.Request, f pages.RolloutForm) (pages.NewRolloutView, error) {
	v := pages.NewRolloutView{Frame: frame(r, "New rollout", "rollouts", ""), Form: f}
	c, err := s.hub.Catalog(r.Context())
	if err != nil {
		return v, err
	}
	for _, rel := range c.Releases {
		v.Versions = append(v.Versions, rel.Version)
	}
	groups, err := s.hub.Groups(r.Context())
	if err != nil {
		return v, err
	}
	for _, g := range groups {
		v.Groups = append(v.Groups, g.Name)
	}
	return v, nil
}

// handleCreateRolloutForm starts a rollout from the New rollout form and
// goes to its page; a form that does not make a rollout comes back with
// what it held and why.
func (s *Server) handleCreateRolloutForm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		p := r.PostForm
		f := pages.RolloutForm{
			ID: strings.TrimSpace(p.Get("id")), Version: strings.TrimSpace(p.Get("version")),
			OtherVersion: strings.TrimSpace(p.Get("other_version")),
			Scope:        p.Get("scope"), Group: p.Get("group"), Selector: strings.TrimSpace(p.Get("selector")),
			Waves: strings.TrimSpace(p.Get("waves")), Success: strings.TrimSpace(p.Get("success")),
			Error: strings.TrimSpace(p.Get("error")), Soak: strings.TrimSpace(p.Get("soak")),
			Concurrent: strings.TrimSpace(p.Get("max_concurrent")),
		}
		ro, err := func() (fleet.Rollout, error) {
			spec, err := specFromForm(f)
			if err != nil {
				return fleet.Rollout{}, err
			}
			return s.createRollout(r, spec)
		}()
		if err != nil {
			v, verr := s.newRolloutView(r, f)
			if verr != nil {
				s.pageError(w, verr)
				return
			}
			v.Error = "Nothing started: " + err.Error() + "."
			s.render(w, r, rolloutStatus(err), pages.NewRollout(v))
			return
		}
		http.Redirect(w, r, rolloutURLNotice(ro.ID, "created"), http.StatusSeeOther)
	})
}

// maxSoak bounds the hold of a wave typed in the form: a week is
// already a long wait for a rollout.
const maxSoak = 7 * 24 * time.Hour

// specFromForm reads the New rollout form into a spec.
func specFromForm(f pages.RolloutForm) (fleet.RolloutSpec, error) {
	spec := fleet.RolloutSpec{ID: f.ID, Version: f.Version}
	if f.OtherVersion != "" {
		spec.Version = f.OtherVersion
	}
	if spec.Version == "" {
		return spec, badInput("choose a release, or type a version")
	}
	switch f.Scope {
	case "", "all":
	case "group":
		if f.Group == "" {
			return spec, badInput("choose a group")
		}
		spec.Group = f.Group
	case "selector":
		if f.Selector == "" {
			return spec, badInput("type the labels the devices must have, as site=berlin,ring=canary")
		}
		sel, err := fleet.ParseSelector(f.Selector)
		if err != nil {
			return spec, inputError{err}
		}
		spec.Selector = sel
	default:
		return spec, badInput("scope %q: want all, group or selector", f.Scope)
	}
	percent := func(name, s string, def int) (int, error) {
		if s == "" {
			return def, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 100 {
			return 0, badInput("%s: want a percent, 0 to 100", name)
		}
		return n, nil
	}
	success, err := percent("next wave at % succeeded", f.Success, 90)
	if err != nil {
		return spec, err
	}
	failed, err := percent("pause at % failed", f.Error, 20)
	if err != nil {
		return spec, err
	}
	if f.Waves == "" {
		spec.Waves = fleet.DefaultWaves()
		for i := range spec.Waves {
			spec.Waves[i].SuccessPercent, spec.Waves[i].ErrorPercent = success, failed
		}
	} else if spec.Waves, err = fleet.ParseWaves(f.Waves, success, failed); err != nil {
		return spec, inputError{err}
	}
	if f.Soak != "" {
		d, err := time.ParseDuration(f.Soak)
		if err != nil || d < 0 || d > maxSoak {
			return spec, badInput("hold each wave for %q: want a duration such as 30m or 2h, at most %s", f.Soak, maxSoak)
		}
		for i := range spec.Waves {
			spec.Waves[i].Soak = fleet.Duration(d)
		}
	}
	if f.Concurrent != "" {
		n, err := strconv.Atoi(f.Concurrent)
		if err != nil || n < 0 {
			return spec, badInput("at most installs at once: want 0 (no bound) or more")
		}
		spec.MaxConcurrent = n
	}
	return spec, nil
}
