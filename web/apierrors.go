package web

import (
	"net/http"
	"strings"
)

// apiErrors answers the mux's own refusals of API paths, 404 for a path
// no route has and 405 for a method the route does not take, in JSON like
// every other API error; the mux's are plain text. Pages keep the mux's.
func apiErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			mux.ServeHTTP(w, r)
			return
		}
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// The mux refuses: learn its status and Allow header, drop its text.
		refusal := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(refusal, r)
		switch refusal.code {
		case http.StatusMethodNotAllowed:
			allow := refusal.header.Get("Allow")
			w.Header().Set("Allow", allow)
			writeError(w, refusal.code, "method "+r.Method+" not allowed on "+r.URL.Path+"; allowed: "+allow)
		case http.StatusNotFound:
			writeError(w, refusal.code, "no API endpoint "+r.URL.Path)
		default:
			writeError(w, refusal.code, http.StatusText(refusal.code))
		}
	})
}

// headerRecorder keeps a response's status and header, and drops its body.
type headerRecorder struct {
	header http.Header
	code   int
}

func (h *headerRecorder) Header() http.Header { return h.header }

func (h *headerRecorder) WriteHeader(code int) {
	if h.code == 0 {
		h.code = code
	}
}

func (h *headerRecorder) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return len(b), nil
}
