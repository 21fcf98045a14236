package web

import (
	"errors"
	"io"
	"log/slog"
	"math"
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

// ReadFrom lets net/http send a file with sendfile(2), as http.ServeContent
// does through io.Copy, while keeping the stall protection.
//
// sendfile reports nothing until it is done, and the kernel wakes a
// writer only once a third of the socket's buffer (megabytes, once it has
// grown) has drained: one deadline put stall ahead would cut a slow
// download that keeps moving. So each call gets a short deadline, a tick;
// when it runs out, sendfile has sent what it could and says how much,
// and the next call sends whatever room the client made meanwhile. Only
// when nothing at all went out for stall does the download end, as a cut
// Write does: a client that keeps reading is never cut, one that stops is
// cut within stall and a tick.
//
// A call is repeated only when it took from the file exactly what it
// reported sent, so nothing read can be lost: a connection that copies
// (TLS, or no sendfile) instead fails as a Write would.
func (w *movingWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	f := fileOf(src)
	if !ok || f == nil {
		return io.Copy(writerOnly{w}, src)
	}
	lr, ok := src.(*io.LimitedReader)
	if !ok {
		lr = &io.LimitedReader{R: f, N: math.MaxInt64}
	}
	// The headers go out first, under the whole stall as any Write: a
	// short deadline must never cut them half way, which would poison the
	// response's buffer under the body that sendfile sends.
	w.extend()
	if err := w.rc.Flush(); err != nil {
		if w.err == nil {
			w.err = err
		}
		return 0, err
	}
	tick := max(w.stall/8, 10*time.Millisecond)
	var total int64
	moved := time.Now()
	for {
		start := time.Now()
		_ = w.rc.SetWriteDeadline(start.Add(tick))
		from, serr := f.Seek(0, io.SeekCurrent)
		n, err := rf.ReadFrom(lr) // advances lr.N and f's offset by what it sent
		total += n
		if n > 0 {
			moved = time.Now()
		}
		if err == nil {
			w.extend()
			return total, nil
		}
		to, terr := f.Seek(0, io.SeekCurrent)
		again := errors.Is(err, os.ErrDeadlineExceeded) &&
			serr == nil && terr == nil && to-from == n && // nothing read was lost
			time.Since(start) >= tick/2 && // the deadline ran out here, not before
			time.Since(moved) < w.stall
		if !again {
			if w.err == nil {
				w.err = err
			}
			w.extend()
			return total, err
		}
	}
}

// fileOf returns the file src reads, as the connection's sendfile sees it
// (a file, or one io.LimitedReader around one), or nil.
func fileOf(src io.Reader) *os.File {
	if lr, ok := src.(*io.LimitedReader); ok {
		src = lr.R
	}
	f, _ := src.(*os.File)
	return f
}

// writerOnly hides a writer's ReadFrom, so that io.Copy does not call it
// again.
type writerOnly struct{ io.Writer }
