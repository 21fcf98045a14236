package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// maxInterrupted is how many installs of one version may be cut short by
// the agent stopping before the version counts as failed: a command that
// kills the agent (or the machine) would otherwise be retried forever.
const maxInterrupted = 3

// partMaxAge is how long a partial download is kept to resume.
const partMaxAge = 7 * 24 * time.Hour

// interruptedDetail is the failed status of an install the agent did not
// live to finish.
const interruptedDetail = "interrupted: agent stopped during install"

// recoverState makes the state folder consistent after whatever ended the
// last run: packages half extracted are removed, stale partial downloads
// too, and an install whose command was running is reported as failed.
// That install is not recorded as failed, so the server's next offer of
// the version installs it again, until it has been interrupted
// maxInterrupted times.
func (a *Agent) recoverState() error {
	if err := os.RemoveAll(a.dirs.staging); err != nil {
		return fmt.Errorf("agent: clear staging: %w", err)
	}
	for _, d := range []string{a.dirs.staging, a.dirs.downloads, a.dirs.releases} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	a.pruneDownloads(time.Now())

	m := a.store.get().Installing
	if m == nil {
		return nil
	}
	var gaveUp bool
	var count int
	err := a.store.update(func(s *state) {
		s.Installing = nil
		if s.Interrupted == nil || !sameVersion(s.Interrupted.Version, m.Version) {
			s.Interrupted = &interrupted{Version: m.Version}
		}
		s.Interrupted.Count++
		count = s.Interrupted.Count
		if count >= maxInterrupted {
			s.recordFailure(m.Version, fmt.Sprintf("%s, %d times", interruptedDetail, count), time.Now())
			s.Interrupted = nil
			gaveUp = true
		}
	})
	if err != nil {
		return fmt.Errorf("agent: clear install marker: %w", err)
	}
	a.log.Warn("the last install was interrupted", "version", m.Version, "offer", m.OfferID, "times", count, "given_up", gaveUp)
	detail := interruptedDetail
	if gaveUp {
		detail = fmt.Sprintf("%s (%d times; not tried again without a retry)", interruptedDetail, count)
	}
	a.status(wire.Status{OfferID: m.OfferID, Version: m.Version, State: wire.StateFailed, Detail: detail})
	return nil
}

// pruneDownloads removes partial downloads last written before
// now - partMaxAge.
func (a *Agent) pruneDownloads(now time.Time) {
	entries, err := os.ReadDir(a.dirs.downloads)
	if err != nil {
		a.log.Warn("downloads folder unreadable", "err", err)
		return
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !strings.HasSuffix(e.Name(), ".part") || now.Sub(info.ModTime()) < partMaxAge {
			continue
		}
		path := filepath.Join(a.dirs.downloads, e.Name())
		if err := os.RemoveAll(path); err != nil {
			a.log.Warn("old download not removed", "path", path, "err", err)
		}
	}
}
