package web

import (
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"
)

// DefaultWriteStall is how long a response may wait on a client that
// reads nothing before its connection is cut.
const DefaultWriteStall = 60 * time.Second

// holdDeadlines gives every response a write deadline that moves with it:
// before each write and flush it is put stall ahead, so a download or a
// live stream that keeps moving never times out, however long it lasts,
// while one whose client stopped reading fails its write after stall and
// the connection is closed. The server has no WriteTimeout, which would
// cut long transfers however well they move.
//
// A request without a body has been read whole when it gets here, so its
// read deadline (the server's ReadTimeout) is lifted: left on, it would
// cancel the request's context in the middle of a long download or live
// stream.
func holdDeadlines(stall time.Duration, log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
			_ = rc.SetReadDeadline(time.Time{})
		}
		mw := &movingWriter{ResponseWriter: w, rc: rc, stall: stall}
		next.ServeHTTP(mw, r)
		if errors.Is(mw.err, os.ErrDeadlineExceeded) {
			log.Info("response cut: the client read nothing for too long", "remote", r.RemoteAddr, "path", r.URL.Path, "stall", stall)
		}
		// The server flushes what is buffered after the handler returns:
		// that too must move within stall.
		mw.extend()
	})
}

// movingWriter puts the write deadline stall ahead before each write.
type movingWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	err   error // the first write error
}

func (w *movingWriter) extend() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.stall)) }

func (w *movingWriter) Write(b []byte) (int, error) {
	w.extend()
	n, err := w.ResponseWriter.Write(b)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// FlushError is what http.ResponseController.Flush calls.
func (w *movingWriter) FlushError() error {
	w.extend()
	return w.rc.Flush()
}

func (w *movingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
