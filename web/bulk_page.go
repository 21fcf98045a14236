package web

// Bulk actions on the Clients page: the devices ticked in the table, or
// every device its filters select, offered again, approved, tagged,
// pinned or deleted at once.

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web/pages"
	"github.com/thinfleet/thinfleet/wire"
)

// maxBulkForm bounds a bulk action's form: ten thousand ids fit.
const maxBulkForm = 1 << 20

// bulkForm is one bulk action on devices, as the page asks for it; the
// API's bulk operations (Server.bulk) do it.
type bulkForm struct {
	Action  string
	IDs     []string
	Tags    fleet.Labels // tag
	Keys    []string     // untag
	Version string       // pin
	Reason  string       // pin
}

// handleBulkForm does a bulk action from the Clients page (POST
// /clients/bulk) and goes back to the page it came from, with what it
// did. A delete asks first, listing the devices, and is done once the
// form comes back with confirm=1. Bad input leaves every device as it
// was and says why on the page.
func (s *Server) handleBulkForm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBulkForm)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		f := r.PostForm
		back := clientsBack(f.Get("back"))
		req, msg := parseBulk(f)
		if msg == "" {
			req.IDs, msg = s.bulkFormIDs(r, f)
		}
		if msg != "" {
			s.clientsWithBulk(w, r, back, http.StatusBadRequest, &pages.BulkResult{Action: req.Action, Error: msg})
			return
		}
		if req.Action == "delete" && f.Get("confirm") != "1" {
			v := pages.BulkConfirmView{Frame: frame(r, "Delete devices", "clients", ""), IDs: req.IDs, Back: back}
			s.render(w, r, http.StatusOK, pages.BulkConfirm(v))
			return
		}
		done, err := s.bulk(r, BulkRequest{IDs: req.IDs, Action: req.Action, Tags: req.Tags, Keys: req.Keys, Version: req.Version, Reason: req.Reason})
		if err != nil {
			status := statusOf(err)
			if status == http.StatusServiceUnavailable {
				s.log.Error("bulk action failed", "action", req.Action, "err", err)
			}
			s.clientsWithBulk(w, r, back, status, &pages.BulkResult{Action: req.Action, Error: "Nothing done: " + err.Error() + "."})
			return
		}
		res := &pages.BulkResult{Action: req.Action}
		for _, o := range done.Results {
			switch {
			case o.OK:
				res.Done++
			case o.Skipped:
				res.Skipped = append(res.Skipped, pages.BulkFailure{ID: o.ID, Error: o.Error})
			default:
				res.Failed = append(res.Failed, pages.BulkFailure{ID: o.ID, Error: o.Error})
			}
		}
		if len(res.Failed) > 0 || len(res.Skipped) > 0 {
			s.clientsWithBulk(w, r, back, http.StatusOK, res)
			return
		}
		u, _ := url.Parse(back)
		q := u.Query()
		q.Set("bulk", req.Action)
		q.Set("done", strconv.Itoa(res.Done))
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusSeeOther)
	})
}

// parseBulk reads the action and its arguments; msg says what is wrong
// with them.
func parseBulk(f url.Values) (req bulkForm, msg string) {
	req.Action = f.Get("action")
	if _, ok := pages.BulkActions[req.Action]; !ok {
		return req, "Choose an action."
	}
	switch req.Action {
	case "tag":
		req.Tags = fleet.Labels{}
		for part := range strings.SplitSeq(f.Get("tags"), ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			k, v, err := fleet.ParseLabel(part)
			if err != nil {
				return req, "Nothing tagged: " + err.Error() + "."
			}
			req.Tags[k] = v
		}
		if len(req.Tags) == 0 {
			return req, "Nothing tagged: write the tags to set, as key=value."
		}
	case "untag":
		for part := range strings.SplitSeq(f.Get("keys"), ",") {
			k := strings.TrimSpace(part)
			if k == "" {
				continue
			}
			if err := fleet.ValidateLabel(k, ""); err != nil {
				return req, "Nothing untagged: " + err.Error() + "."
			}
			req.Keys = append(req.Keys, k)
		}
		if len(req.Keys) == 0 {
			return req, "Nothing untagged: write the keys of the tags to remove."
		}
	case "pin":
		req.Version, req.Reason = strings.TrimSpace(f.Get("version")), strings.TrimSpace(f.Get("reason"))
		if req.Version == "" {
			return req, "Nothing pinned: choose the version to pin to."
		}
		if len(req.Reason) > 200 {
			return req, "Nothing pinned: say why in at most 200 characters."
		}
	}
	return req, ""
}

// bulkFormIDs are the devices a bulk action acts on: the ids ticked, or with
// all=1 every device the page's filters select (not only its page).
func (s *Server) bulkFormIDs(r *http.Request, f url.Values) ([]string, string) {
	if f.Get("all") != "1" {
		var ids []string
		for _, id := range f["id"] {
			if wire.ValidateID(id) != nil {
				return nil, "Nothing done: " + strconv.Quote(id) + " is not a device id."
			}
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return nil, "Nothing done: tick the devices to act on, or all the matching ones."
		}
		return ids, ""
	}
	filter, err := url.ParseQuery(f.Get("filter"))
	if err != nil {
		return nil, "Nothing done: the filters do not parse."
	}
	ctx := r.Context()
	devices, err := s.hub.Devices(ctx)
	if err != nil {
		return nil, "Nothing done: " + err.Error() + "."
	}
	c, err := s.opts.Store.Catalog(ctx)
	if err != nil {
		return nil, "Nothing done: " + err.Error() + "."
	}
	groups, err := s.hub.Groups(ctx)
	if err != nil {
		return nil, "Nothing done: " + err.Error() + "."
	}
	q := pages.ParseClientsQuery(filter)
	df := newDeviceFilter(q, groups)
	if df.err != "" {
		return nil, "Nothing done: " + df.err
	}
	var ids []string
	for _, d := range selectClients(devices, q, newVersions(c.Target), c, df) {
		ids = append(ids, d.ID)
	}
	if len(ids) == 0 {
		return nil, "Nothing done: no device matches the filters."
	}
	return ids, ""
}

// clientsBack is the Clients page a bulk action returns to: back when it
// is one, with its filters, sort and page; the Clients page otherwise.
func clientsBack(back string) string {
	u, err := url.Parse(localPath(back))
	if err != nil || u.Path != "/clients" {
		return "/clients"
	}
	q := pages.ParseClientsQuery(u.Query())
	return q.URL()
}

// clientsWithBulk answers with the Clients page as back shows it, and
// what the bulk action did or why it did nothing.
func (s *Server) clientsWithBulk(w http.ResponseWriter, r *http.Request, back string, status int, res *pages.BulkResult) {
	view := r.Clone(r.Context())
	view.URL, _ = url.Parse(back)
	v, err := s.clientsPage(view)
	if err != nil {
		s.pageError(w, err)
		return
	}
	v.Bulk = res
	// The page answers a POST: a live refresh would fetch its URL again,
	// which only takes a form. A filter or a link leads back to a live one.
	v.Live = ""
	s.render(w, r, status, pages.Clients(v))
}
