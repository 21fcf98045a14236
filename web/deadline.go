package web

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"sync"
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
// does through io.Copy, while keeping the stall protection. sendfile
// reports nothing until it is done, and waits for room in the socket's
// buffer, megabytes on a fast path, in one go: a deadline put once would
// cut a long download however well it moves. So while it runs, the
// file's offset, which Linux's sendfile advances as it sends, is looked
// at every quarter of stall, and the deadline is put stall ahead whenever
// it moved: a client that keeps reading is never cut, and one that stops
// is cut within stall and a quarter.
//
// Elsewhere than Linux, or from anything but a file, it copies through
// Write, which moves the deadline itself.
func (w *movingWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	f := fileOf(src)
	if !ok || f == nil || runtime.GOOS != "linux" {
		return io.Copy(writerOnly{w}, src)
	}
	w.extend()
	stop := w.watchOffset(f)
	n, err := rf.ReadFrom(src)
	stop()
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
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

// watchOffset puts the deadline stall ahead every quarter of stall in
// which f's offset moved, until stop is called.
func (w *movingWriter) watchOffset(f *os.File) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(w.stall / 4)
		defer t.Stop()
		last, err := f.Seek(0, io.SeekCurrent)
		for err == nil {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var at int64
			if at, err = f.Seek(0, io.SeekCurrent); err == nil && at != last {
				last = at
				w.extend()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// writerOnly hides a writer's ReadFrom, so that io.Copy does not call it
// again.
type writerOnly struct{ io.Writer }
