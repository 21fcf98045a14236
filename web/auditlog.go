package web

// GET /api/v1/audit and the Audit log page: the operator actions that
// web/audit.go records, newest first, a page at a time.

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web/pages"
)

// The page sizes of the audit log.
const (
	// DefaultAuditLimit is the page size when a request names none.
	DefaultAuditLimit = 50
	// MaxAuditLimit is the largest page; a larger limit is refused.
	MaxAuditLimit = 1000
	// auditScan bounds the entries one filtered request reads: a filter
	// that matches rarely answers a short page, with the place to go on
	// from, instead of reading the whole log.
	auditScan = 5000
	// maxAuditFilter bounds the length of a filter's value.
	maxAuditFilter = 128
)

// auditQuery is what a request for the audit log asks for.
type auditQuery struct {
	limit int
	// before: only entries older than the one with this sequence (0:
	// from the newest).
	before uint64
	// action is a prefix of the actions shown ("rollout." or
	// "device.pin"); target is the exact target. Empty: any.
	action, target string
}

// parseAuditQuery reads the query string of the audit log. Every value
// it does not understand is an error naming its parameter.
func parseAuditQuery(v url.Values) (auditQuery, *paramError) {
	q := auditQuery{
		limit:  DefaultAuditLimit,
		action: strings.TrimSpace(v.Get("action")),
		target: strings.TrimSpace(v.Get("target")),
	}
	if v.Has("limit") {
		n, err := strconv.Atoi(v.Get("limit"))
		if err != nil || n < 1 || n > MaxAuditLimit {
			return q, &paramError{"limit", "want a number from 1 to " + strconv.Itoa(MaxAuditLimit)}
		}
		q.limit = n
	}
	if v.Has("before") {
		n, err := strconv.ParseUint(v.Get("before"), 10, 64)
		if err != nil {
			return q, &paramError{"before", "want the sequence number of an entry (the next of a page this server gave)"}
		}
		q.before = n
	}
	for _, f := range []struct{ name, value string }{{"action", q.action}, {"target", q.target}} {
		if len(f.value) > maxAuditFilter {
			return q, &paramError{f.name, "want at most " + strconv.Itoa(maxAuditFilter) + " characters"}
		}
	}
	return q, nil
}

// match reports whether q shows e.
func (q auditQuery) match(e fleet.AuditEntry) bool {
	return strings.HasPrefix(e.Action, q.action) && (q.target == "" || e.Target == q.target)
}

// auditEntries returns up to q.limit entries that q matches, newest
// first, and where the next page starts (its before; 0 when there is no
// older entry). Unfiltered, it reads one page of the log; filtered, it
// reads on in larger pages until it has q.limit matches or has read
// auditScan entries.
func (s *Server) auditEntries(ctx context.Context, q auditQuery) ([]fleet.AuditEntry, uint64, error) {
	filtered := q.action != "" || q.target != ""
	chunk := q.limit
	if filtered {
		chunk = max(q.limit, 500)
	}
	out := []fleet.AuditEntry{}
	before, scanned := q.before, 0
	for {
		page, more, err := s.opts.Store.AuditPage(ctx, before, chunk)
		if err != nil {
			return nil, 0, err
		}
		for i, e := range page {
			if !q.match(e) {
				continue
			}
			out = append(out, e)
			if len(out) == q.limit {
				if i < len(page)-1 || more {
					return out, e.Seq, nil
				}
				return out, 0, nil
			}
		}
		if !more || len(page) == 0 {
			return out, 0, nil
		}
		before = page[len(page)-1].Seq
		if scanned += len(page); scanned >= auditScan {
			return out, before, nil
		}
	}
}

// AuditLog is the answer of GET /api/v1/audit.
type AuditLog struct {
	Entries []fleet.AuditEntry `json:"entries"`
	// Next is the before of the next, older page; 0 when there is none.
	Next uint64 `json:"next"`
}

func (s *Server) handleAudit() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, perr := parseAuditQuery(r.URL.Query())
		if perr != nil {
			writeParamError(w, perr)
			return
		}
		entries, next, err := s.auditEntries(r.Context(), q)
		if err != nil {
			s.internalError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, AuditLog{Entries: entries, Next: next})
	})
}

func (s *Server) handleAuditPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, perr := parseAuditQuery(r.URL.Query())
		v := pages.AuditView{Frame: frame(r, "Audit log", "audit", ""), Action: q.action, Target: q.target}
		if perr != nil {
			v.Error = "Not a valid " + perr.Error() + "."
			s.render(w, r, http.StatusBadRequest, pages.Audit(v))
			return
		}
		entries, next, err := s.auditEntries(r.Context(), q)
		if err != nil {
			s.pageError(w, err)
			return
		}
		v.Entries = entries
		if next != 0 {
			v.Older = auditURL(q, next)
		}
		if q.before != 0 {
			v.Newest = auditURL(q, 0)
		}
		s.render(w, r, http.StatusOK, pages.Audit(v))
	})
}

// auditURL is the Audit log page of q's filters and page size, from
// before (0: the newest).
func auditURL(q auditQuery, before uint64) string {
	v := url.Values{}
	if q.action != "" {
		v.Set("action", q.action)
	}
	if q.target != "" {
		v.Set("target", q.target)
	}
	if q.limit != DefaultAuditLimit {
		v.Set("limit", strconv.Itoa(q.limit))
	}
	if before != 0 {
		v.Set("before", strconv.FormatUint(before, 10))
	}
	if len(v) == 0 {
		return "/audit"
	}
	return "/audit?" + v.Encode()
}
