package web

import (
	"io"
	"net/http"
	"time"

	"github.com/thinfleet/thinfleet/metrics"
)

// instrumentHTTP observes how long each request takes. It labels by the
// route pattern the mux matched (set on the request as it is served), so
// the number of series stays bounded whatever paths clients ask for.
func instrumentHTTP(m *metrics.Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		if sw.Header().Get("Content-Type") == "text/event-stream" {
			return // a live stream lasts as long as the page: not a latency
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.HTTPRequest(route, r.Method, sw.code, time.Since(start).Seconds())
	})
}

// statusWriter remembers the status code. Unwrap lets
// http.ResponseController reach the Flusher underneath.
type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReadFrom passes io.Copy through to the writer underneath, so that a
// download can go by sendfile (see movingWriter.ReadFrom).
func (w *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	w.wroteHeader = true
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{w.ResponseWriter}, src)
}
