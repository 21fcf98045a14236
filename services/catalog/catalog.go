// Package catalog turns the updates folder into the release catalog. It
// watches the folder (fsnotify, plus a periodic rescan for what events
// miss), inspects every *.zip in it with package bundle, and writes the
// catalog to the store whenever its content changes: the valid releases,
// newest first; the refused zips with their reasons; and the target, the
// version offered to every device below it.
//
// A refused zip changes nothing else: the other releases and the target
// stay as they were. Two zips of one version are an operator's mistake:
// the one the stored catalog already offers stays the release, and the
// newcomer is refused, so adding a zip never replaces what devices are
// being offered, and a restart does not either. When the catalog offers
// neither (a first scan), the oldest by modification time stays, then the
// first by file name.
//
// The target is the newest valid version of the stable channel (a
// release of another channel reaches only the groups that follow it),
// unless the folder holds a policy file named "target" whose first line
// that is neither empty nor a "#" comment names the version to offer. A pinned version that no valid
// zip provides makes the target empty, and the catalog says why: thinfleet
// never silently offers something else. The line may also be in the seed
// system's form, 'name', 'version', 'checksum', 'link', 'command': its
// version must be a release's and its checksum that release's sha256
// (unless it is a placeholder shorter than a digest); a line that is not
// is refused with its reason, logged as a warning, and the target stays
// what it was.
//
// With a publisher key, a zip is a release only if the signature file
// beside it (update.zip.sig for update.zip) verifies against the key over
// the zip's exact bytes; the sha256 offered is taken in the same read, so
// the bytes hashed are the bytes verified. A changed signature file makes
// the zip be read again.
package catalog

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/thinfleet/thinfleet/bundle"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/store"
)

// Options configure the catalog service.
type Options struct {
	Log *slog.Logger // slog.Default() when nil
	// Metrics count what the service refuses and does; nil counts nothing.
	Metrics *metrics.Metrics
	Store   *store.Store // required
	// Dir is the updates folder; required. It is created if missing.
	Dir string
	// Rescan is how often the folder is read even without an event (30s).
	Rescan time.Duration
	// Limits bound what a zip may expand to; zero fields take
	// bundle.DefaultLimits.
	Limits bundle.Limits
	// PublisherKey, when set, makes every zip need a signature file
	// (<zip>.sig) that verifies against it; a zip without one is refused.
	// Without it, a signature that is there is passed on unverified.
	PublisherKey ed25519.PublicKey
}

// DefaultRescan is the rescan period when Options.Rescan is zero.
const DefaultRescan = 30 * time.Second

// debounce is how long the folder must be quiet after an event before it
// is scanned: copying a zip in makes many events, one scan is enough.
const debounce = 300 * time.Millisecond

// PolicyFile is the name of the policy file in the updates folder.
const PolicyFile = "target"

// Service keeps the catalog in step with the updates folder.
type Service struct {
	metrics *metrics.Metrics
	log     *slog.Logger
	store   *store.Store
	dir     string
	rescan  time.Duration
	limits  bundle.Limits
	key     ed25519.PublicKey

	// The fields below belong to Run's goroutine.
	cache map[string]inspected // by file name
	// published is the catalog as last read from or written to the
	// store; nil until the store has answered.
	published *fleet.Catalog
}

// New checks opts and returns a service ready to Run.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("catalog: Store is required")
	}
	if opts.Dir == "" {
		return nil, errors.New("catalog: Dir, the updates folder, is required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Rescan <= 0 {
		opts.Rescan = DefaultRescan
	}
	if opts.PublisherKey != nil && len(opts.PublisherKey) != ed25519.PublicKeySize {
		return nil, errors.New("catalog: PublisherKey is not an ed25519 public key")
	}
	return &Service{metrics: opts.Metrics,
		log: opts.Log, store: opts.Store, dir: opts.Dir, rescan: opts.Rescan, limits: opts.Limits, key: opts.PublisherKey,
		cache: map[string]inspected{},
	}, nil
}

// Run scans the folder at start, after every burst of changes in it and
// every Rescan, until ctx ends. Everything runs in the caller's goroutine
// (fsnotify's own ends when Run closes its watcher); a scan under way
// finishes before Run returns. Problems with the folder or the store are
// logged and retried at the next scan; the only error is for a folder
// that cannot be created.
func (s *Service) Run(ctx context.Context) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("catalog: updates folder: %w", err)
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("cannot watch the updates folder, rescanning only", "every", s.rescan, "err", err)
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
		s.watch(w)
	}
	if s.key != nil {
		s.log.Info("signed releases only: a zip needs a signature that verifies against the publisher key")
	}
	s.scan(ctx)
	tick := time.NewTicker(s.rescan)
	defer tick.Stop()
	quiet := time.NewTimer(debounce)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			quiet.Reset(debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// Most likely an overflow: events were lost, so look.
			s.log.Warn("watch updates folder", "err", err)
			quiet.Reset(debounce)
		case <-quiet.C:
			s.scan(ctx)
		case <-tick.C:
			if w != nil {
				s.watch(w)
			}
			s.scan(ctx)
		}
	}
}

// watch makes sure w watches the folder: it stops when the folder is
// removed, and starts again once it is back.
func (s *Service) watch(w *fsnotify.Watcher) {
	if len(w.WatchList()) > 0 {
		return
	}
	if err := w.Add(s.dir); err != nil {
		s.log.Warn("cannot watch the updates folder, rescanning only", "dir", s.dir, "every", s.rescan, "err", err)
	}
}
