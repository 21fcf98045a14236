package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// Download limits. An attempt that adds bytes to the file resets the count
// of failed attempts: a flaky link that keeps making progress finishes.
const (
	downloadAttempts = 5
	downloadBackoff  = 500 * time.Millisecond
	downloadMaxWait  = 15 * time.Second
	stallTimeout     = time.Minute
	progressEvery    = 500 * time.Millisecond
	// A download logs how far it is at each quarter, and at least every
	// progressLogEvery: a 120 MB package takes long enough on a slow link
	// that a silent agent looks stuck.
	progressLogEvery = 10 * time.Second
)

// permanentError is a download failure no retry can mend: the server's
// file is not the one offered.
type permanentError struct{ error }

func permanent(format string, args ...any) error {
	return permanentError{fmt.Errorf(format, args...)}
}

// refusedError is a download the server refused (403: the offer's signed
// link expired, or is not the server's). No retry of the same link can
// mend it, but the bytes already there are good: they are kept for the
// next offer, whose fresh link resumes them.
type refusedError struct{ error }

var errStalled = errors.New("no data received for " + stallTimeout.String())

// newHTTPClient returns the client downloads go through, trusting roots
// (nil: the system's authorities) for https links.
func newHTTPClient(roots *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if roots != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	t.ResponseHeaderTimeout = 30 * time.Second
	// Byte offsets must be the file's, for Range requests to resume it.
	t.DisableCompression = true
	return &http.Client{Transport: t}
}

// download fetches the offer's file into downloads/<sha256>.part,
// continuing a partial file with a Range request, and returns its path.
// A failure the server may mend keeps the partial file for the next try;
// a file that cannot be the offered one is removed.
func (a *Agent) download(ctx context.Context, o wire.Offer) (string, error) {
	if err := os.MkdirAll(a.dirs.downloads, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(a.dirs.downloads, o.SHA256+".part")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", err
	}
	if have > o.Size {
		if have, err = restart(f); err != nil {
			return "", err
		}
	}
	if have > 0 {
		a.log.Info("resuming download", "version", o.Version, "from", have)
	}
	p := newProgress(a, o, have)
	for fails := 0; have < o.Size; {
		before := have
		have, err = a.fetch(ctx, f, o, have, p)
		if err == nil {
			continue
		}
		if errors.As(err, new(permanentError)) {
			f.Close()
			os.Remove(path)
			return "", err
		}
		if errors.As(err, new(refusedError)) {
			return "", fmt.Errorf("%w (%d of %d bytes kept to resume)", err, have, o.Size)
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if have > before {
			fails = 0
		}
		if fails++; fails >= downloadAttempts {
			return "", fmt.Errorf("%w (gave up after %d tries; %d of %d bytes kept to resume)", err, downloadAttempts, have, o.Size)
		}
		a.log.Warn("download interrupted, retrying", "version", o.Version, "have", have, "err", err)
		if !sleep(ctx, jittered(backoff(downloadBackoff, downloadMaxWait, fails))) {
			return "", ctx.Err()
		}
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", path, err)
	}
	p.report(o.Size, true)
	return path, nil
}

// fetch makes one GET, continuing at have, and returns the file's new
// size.
func (a *Agent) fetch(ctx context.Context, f *os.File, o wire.Offer, have int64, p *progress) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(stallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
	if err != nil {
		return have, permanent("%w", err)
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return have, stallCause(ctx, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != o.Size {
			return have, permanent("the server has %d bytes, the offer says %d", resp.ContentLength, o.Size)
		}
		if have > 0 { // the server ignored the Range header
			if have, err = restart(f); err != nil {
				return have, err
			}
		}
	case http.StatusPartialContent:
		start, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		switch {
		case err != nil:
			return have, permanent("%w", err)
		case start != have:
			return have, permanent("the server resumed at byte %d, not %d", start, have)
		case total >= 0 && total != o.Size:
			return have, permanent("the server has %d bytes, the offer says %d", total, o.Size)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		return have, permanent("the server has fewer bytes than the offer's %d (no bytes after %d)", o.Size, have)
	default:
		err := fmt.Errorf("GET %s: %s", o.URL, resp.Status)
		if c := resp.StatusCode; c >= 500 || c == http.StatusTooManyRequests || c == http.StatusRequestTimeout {
			return have, err
		}
		if c := resp.StatusCode; c == http.StatusForbidden || c == http.StatusUnauthorized {
			return have, refusedError{fmt.Errorf("%w: the download link was refused (expired?)", err)}
		}
		return have, permanentError{err}
	}
	w := writerFunc(func(b []byte) (int, error) {
		n, err := f.Write(b)
		have += int64(n)
		stall.Reset(stallTimeout)
		p.report(have, false)
		return n, err
	})
	_, err = io.Copy(w, io.LimitReader(resp.Body, o.Size-have+1))
	switch {
	case have > o.Size:
		return have, permanent("the server sent more than the offer's %d bytes", o.Size)
	case err != nil:
		return have, stallCause(ctx, err)
	case have < o.Size:
		return have, fmt.Errorf("connection closed after %d of %d bytes", have, o.Size)
	}
	return have, nil
}

// restart empties the partial file.
func restart(f *os.File) (int64, error) {
	if err := f.Truncate(0); err != nil {
		return 0, err
	}
	return f.Seek(0, io.SeekStart)
}

// stallCause names a stall as the reason a request ended, instead of the
// bare "context canceled".
func stallCause(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return errStalled
	}
	return err
}

// parseContentRange parses "bytes START-END/TOTAL"; total is -1 for "*".
func parseContentRange(s string) (start, total int64, err error) {
	spec, ok := strings.CutPrefix(s, "bytes ")
	rng, size, ok2 := strings.Cut(spec, "/")
	first, _, ok3 := strings.Cut(rng, "-")
	if !ok || !ok2 || !ok3 {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	if start, err = strconv.ParseInt(first, 10, 64); err != nil || start < 0 {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	if size == "*" {
		return start, -1, nil
	}
	if total, err = strconv.ParseInt(size, 10, 64); err != nil || total < 0 {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	return start, total, nil
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(b []byte) (int, error) { return w(b) }

// progress sends download progress statuses, at most one per
// progressEvery, and always the last one; and logs the download's
// progress at each quarter of the size, at least every progressLogEvery,
// and at the end.
type progress struct {
	a    *Agent
	o    wire.Offer
	last time.Time // of the last status

	start     time.Time // when this download (or its resumption) began
	from      int64     // bytes already there then
	logged    time.Time // of the last progress line
	quarterAt int64     // quarters of the size logged so far
}

func newProgress(a *Agent, o wire.Offer, have int64) *progress {
	now := time.Now()
	p := &progress{a: a, o: o, last: now, start: now, from: have, logged: now}
	if o.Size > 0 {
		p.quarterAt = have * 4 / o.Size
	}
	return p
}

func (p *progress) report(done int64, final bool) {
	p.logProgress(done, final)
	if !final && time.Since(p.last) < progressEvery {
		return
	}
	p.last = time.Now()
	p.a.status(wire.Status{OfferID: p.o.ID, Version: p.o.Version, State: wire.StateDownloading,
		Progress: true, BytesDone: done, BytesTotal: p.o.Size})
}

func (p *progress) logProgress(done int64, final bool) {
	now := time.Now()
	if final {
		p.a.log.Info("downloaded", "version", p.o.Version, "bytes", p.o.Size,
			"took", now.Sub(p.start).Round(time.Millisecond), "rate", rate(done-p.from, now.Sub(p.start)))
		return
	}
	if p.o.Size <= 0 || done >= p.o.Size {
		return // the final line says it
	}
	quarter := done * 4 / p.o.Size
	if quarter <= p.quarterAt && now.Sub(p.logged) < progressLogEvery {
		return
	}
	p.quarterAt, p.logged = quarter, now
	p.a.log.Info("downloading", "version", p.o.Version, "done", done, "total", p.o.Size,
		"percent", done*100/p.o.Size, "rate", rate(done-p.from, now.Sub(p.start)))
}

// rate formats n bytes in d as a transfer rate, e.g. "4.8MB/s".
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	bps := float64(n) / d.Seconds()
	for _, u := range []string{"B/s", "kB/s", "MB/s"} {
		if bps < 1000 {
			return strconv.FormatFloat(bps, 'f', 1, 64) + u
		}
		bps /= 1000
	}
	return strconv.FormatFloat(bps, 'f', 1, 64) + "GB/s"
}
