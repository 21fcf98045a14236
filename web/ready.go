package web

import (
	"context"
	"net/http"
	"time"
)

// readyTimeout bounds how long /readyz waits for the broker.
const readyTimeout = 3 * time.Second

// handleReady answers /readyz: 200 while the broker is connected and every
// bucket and stream answers, 503 with the reason otherwise. Unlike
// /healthz (the process is up) it tells a load balancer or an
// orchestrator whether this server can do its work now.
func (s *Server) handleReady() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		err := s.opts.Store.Ready(ctx)
		if err == nil {
			err = s.sessions.ready(ctx)
		}
		if err == nil && s.opts.BrokerFault != nil {
			err = s.opts.BrokerFault()
		}
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}
