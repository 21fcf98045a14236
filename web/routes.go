package web

import (
	"net/http"
	"strings"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web/pages"
)

// Handler returns every route of the server.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	api := s.requireToken
	page := s.requireSession
	post := func(h http.Handler) http.Handler { return s.cross.Handler(h) }

	mux.Handle("GET /healthz", handleHealth())
	mux.Handle("GET /readyz", s.handleReady())
	mux.Handle("GET /metrics", s.handleMetrics())

	mux.Handle("GET /api/v1/devices", api(s.handleDevices()))
	mux.Handle("GET /api/v1/devices/{id}", api(s.handleDevice()))
	mux.Handle("GET /api/v1/updates", api(s.handleUpdates()))
	mux.Handle("GET /api/v1/catalog", api(s.handleCatalog()))
	mux.Handle("GET /api/v1/history", api(s.handleHistory()))
	mux.Handle("GET /api/v1/enrollments", api(s.handleEnrollments()))
	mux.Handle("POST /api/v1/devices/{id}/approve", api(s.handleEnrollState(fleet.EnrollApproved)))
	mux.Handle("POST /api/v1/devices/{id}/revoke", api(s.handleEnrollState(fleet.EnrollRevoked)))
	mux.Handle("DELETE /api/v1/devices/{id}", api(s.handleDeleteDevice()))
	mux.Handle("POST /api/v1/devices/{id}/offer", api(s.handleOfferAgainAPI()))
	mux.Handle("POST /api/v1/devices/{id}/tags", api(s.handleTags()))
	mux.Handle("PUT /api/v1/devices/{id}/pin", api(s.handlePin()))
	mux.Handle("DELETE /api/v1/devices/{id}/pin", api(s.handleUnpin()))
	mux.Handle("POST /api/v1/devices/bulk", api(s.handleBulkAPI()))
	mux.Handle("GET /api/v1/groups", api(s.handleGroups()))
	mux.Handle("GET /api/v1/groups/{name}", api(s.handleGroup()))
	mux.Handle("PUT /api/v1/groups/{name}", api(s.handlePutGroup()))
	mux.Handle("DELETE /api/v1/groups/{name}", api(s.handleDeleteGroup()))
	mux.Handle("GET /api/v1/rollouts", api(s.handleRollouts()))
	mux.Handle("POST /api/v1/rollouts", api(s.handleCreateRollout()))
	mux.Handle("GET /api/v1/rollouts/{id}", api(s.handleRollout()))
	mux.Handle("DELETE /api/v1/rollouts/{id}", api(s.handleDeleteRollout()))
	for _, action := range []string{actionPause, actionResume, actionAbort, actionRollBack, actionRelease} {
		mux.Handle("POST /api/v1/rollouts/{id}/"+action, api(s.handleRolloutAction(action)))
	}
	mux.Handle("GET /api/v1/audit", api(s.handleAudit()))

	mux.Handle("GET /downloads/{file}", s.handleDownload())

	mux.Handle("GET /login", s.handleLoginForm())
	mux.Handle("POST /login", post(s.handleLogin()))
	mux.Handle("POST /logout", post(s.handleLogout()))
	mux.Handle("GET /static/", handleStatic())

	mux.Handle("GET /{$}", page(s.handleOverview()))
	mux.Handle("GET /clients", page(s.handleClients()))
	mux.Handle("POST /clients/bulk", post(page(s.handleBulkForm())))
	mux.Handle("GET /clients/{id}", page(s.handleClient()))
	mux.Handle("POST /clients/{id}/offer", post(page(s.handleOfferAgain())))
	mux.Handle("POST /clients/{id}/approve", post(page(s.handleEnrollAction(fleet.EnrollApproved))))
	mux.Handle("POST /clients/{id}/revoke", post(page(s.handleEnrollAction(fleet.EnrollRevoked))))
	mux.Handle("POST /clients/{id}/delete", post(page(s.handleDeleteAction())))
	mux.Handle("GET /rollouts", page(s.handleRolloutsPage()))
	mux.Handle("GET /rollouts/new", page(s.handleNewRolloutPage()))
	mux.Handle("POST /rollouts", post(page(s.handleCreateRolloutForm())))
	mux.Handle("GET /rollouts/{id}", page(s.handleRolloutPage()))
	for _, action := range []string{actionPause, actionResume, actionAbort, actionRollBack, actionRelease, "delete"} {
		mux.Handle("POST /rollouts/{id}/"+action, post(page(s.handleRolloutActionForm(action))))
	}
	mux.Handle("GET /history", page(s.handleHistoryPage()))
	mux.Handle("GET /updates", page(s.handleUpdatesPage()))
	mux.Handle("GET /downloads", page(s.handleDownloadsPage()))
	mux.Handle("GET /audit", page(s.handleAuditPage()))
	mux.Handle("GET /live", page(s.handleLive()))
	return holdDeadlines(s.opts.WriteStall, s.log, instrumentHTTP(s.opts.Metrics, secureHeaders(apiErrors(mux))))
}

// handleStatic serves the dashboard's stylesheet and script. Their URLs
// carry a version of their content, so browsers may keep them a year.
func handleStatic() http.Handler {
	files := http.StripPrefix("/static/", http.FileServerFS(pages.Static))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no listing of the folder
			return
		}
		if r.URL.Query().Get("v") != "" {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		files.ServeHTTP(w, r)
	})
}
