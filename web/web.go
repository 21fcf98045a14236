// Package web serves thinfleet over HTTP: the dashboard pages (rendered
// by package pages, kept live over one Server-Sent Events stream a page),
// the JSON API, the update downloads, health and metrics. Every route is
// in routes.go.
//
// The API takes the admin token as a bearer token; the pages take it once
// at a login form and keep a session cookie.
package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/ratelimit"
	"github.com/thinfleet/thinfleet/store"
)

// Options configure the web server.
type Options struct {
	Log   *slog.Logger
	Store *store.Store
	// Metrics count the HTTP requests; nil counts nothing.
	Metrics *metrics.Metrics
	// Gatherer is the process's registry, which /metrics serves with
	// the fleet's device gauges and the broker's counts; nil serves
	// those alone.
	Gatherer prometheus.Gatherer
	// UpdatesDir is the drop folder the downloads are served from.
	UpdatesDir string
	// AdminToken guards the API (Authorization: Bearer <token>).
	AdminToken string
	// PublicURL is the base of download links, e.g. http://fleet:8080.
	PublicURL string
	// Conn publishes the offers an operator makes from a device's page;
	// nil disables that action.
	Conn *nats.Conn
	// LinkKey signs download links (package downloadlink), as the
	// decision service does, for the offers and the Downloads page; with
	// none, links are plain.
	LinkKey []byte
	// BrokerFault, when set, is the in-process broker's store fault: while
	// it returns an error, /readyz answers not ready.
	BrokerFault func() error
	// WriteStall is how long a response may make no progress before its
	// connection is cut (DefaultWriteStall when zero); see holdDeadlines.
	WriteStall time.Duration
}

// Server is the HTTP side of thinfleet. It holds no state of its own:
// everything it shows is read from the Store.
type Server struct {
	opts Options
	log  *slog.Logger
	hub  *hub
	// cross refuses cross-site POSTs, which a session cookie would
	// otherwise let through.
	cross *http.CrossOriginProtection
	// logins bounds wrong admin tokens per client address, at the
	// sign-in form and on the API alike (checkToken).
	logins   *ratelimit.Limiter
	sessions *sessions
}

// A client address may send a wrong admin token loginBurst times at once,
// then once every ten seconds.
const (
	loginRate  = 0.1
	loginBurst = 10
)

// New returns a Server; Handler gives its routes.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("web: a store is required")
	}
	if opts.AdminToken == "" {
		return nil, errors.New("web: an admin token is required")
	}
	if err := CheckAdminToken(opts.AdminToken); err != nil {
		return nil, fmt.Errorf("web: admin token too weak: %w", err)
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.WriteStall <= 0 {
		opts.WriteStall = DefaultWriteStall
	}
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	return &Server{
		opts: opts, log: opts.Log, hub: newHub(opts.Store, opts.Log),
		cross:    http.NewCrossOriginProtection(),
		logins:   ratelimit.New(loginRate, loginBurst),
		sessions: &sessions{store: opts.Store},
	}, nil
}

// Close ends the live streams and stops watching the store. The pages and
// the API still answer after it, reading the store directly.
func (s *Server) Close() { s.hub.Close() }

// requireToken lets a request through only with the admin bearer token.
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !bearer {
			got = ""
		}
		err := s.checkToken(r, got)
		if errors.Is(err, errThrottled) {
			w.Header().Set("Retry-After", "10")
			writeError(w, http.StatusTooManyRequests, "too many wrong admin tokens from this address: wait a few seconds")
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="thinfleet"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong admin token: send Authorization: Bearer <token>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// contentPolicy lets a page load only this server's own stylesheet and
// script: no inline script or style, nothing from elsewhere, no framing.
const contentPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secureHeaders sets the headers every response carries.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// writeParamError refuses a request for a query parameter's value, with
// 400 and the parameter's name.
func writeParamError(w http.ResponseWriter, err *paramError) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error(), "param": err.param})
}
