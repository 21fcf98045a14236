package web

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns every route of the server.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	api := s.requireToken

	mux.Handle("GET /healthz", handleHealth())
	mux.Handle("GET /metrics", promhttp.Handler())

	mux.Handle("GET /api/v1/devices", api(s.handleDevices()))
	mux.Handle("GET /api/v1/devices/{id}", api(s.handleDevice()))
	mux.Handle("GET /api/v1/updates", api(s.handleUpdates()))
	mux.Handle("GET /api/v1/catalog", api(s.handleCatalog()))
	mux.Handle("GET /api/v1/history", api(s.handleHistory()))

	mux.Handle("GET /downloads/{file}", s.handleDownload())
	return secureHeaders(mux)
}
