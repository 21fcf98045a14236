package web

import (
	"net"
	"net/http"

	"github.com/thinfleet/thinfleet/fleet"
)

// audit records an operator's action in the audit log (store.AppendAudit):
// who (the admin, at the API or on the dashboard, and from which
// address), the action ("device.tag", "rollout.pause", …), what it was
// done to and a line of detail. Call it once the action is done; an
// action that failed is not recorded. A log that cannot be written does
// not undo the action: it is logged as an error.
func (s *Server) audit(r *http.Request, action, target, detail string) {
	e := fleet.AuditEntry{Who: who(r), Action: action, Target: target, Detail: detail}
	if err := s.opts.Store.AppendAudit(r.Context(), e); err != nil {
		s.log.Error("audit log not written", "action", action, "target", target, "who", e.Who, "err", err)
	}
}

// who names the operator behind r: the admin token at the API, or a
// dashboard session, and the address the request came from.
func who(r *http.Request) string {
	client, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		client = r.RemoteAddr
	}
	via := "dashboard"
	if r.Header.Get("Authorization") != "" {
		via = "api"
	}
	return "admin (" + via + ") from " + client
}
