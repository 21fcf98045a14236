// Package decision offers updates: it publishes on update.offer.<id> to
// each device what its plan says (fleet.Plan: its pin or its group's,
// the rollouts, its group's channel, or the catalog's target), and only
// while its maintenance window is open and its rollout's MaxConcurrent
// allows (plan.go). It never offers a downgrade but a deliberate
// rollback (a pin, a rolled back rollout: wire.Offer.Rollback), nor a
// release to a device of another platform than the release lists; a
// failed install is offered again automatically after a pause that
// doubles each time, and a device that fails the same release Tries
// times is held back until an operator offers it again or another
// release becomes its target (retry.go). An interruption is no failure:
// the agent retries those by itself after a crash.
//
// The service decides from memory: it keeps a copy of every device
// record, loaded once from the devices bucket and kept current by a
// watch of it (view.go), and of the catalog, the groups and the rollouts
// (plan.go). A catalog change publishes every offer first, then records
// them in the history without waiting for each append in turn
// (store.Recorder): at 10,000 devices the offers are out before the
// first history append is on disk.
//
// Offers go out on core NATS: an offer to a device that is not listening
// is lost, and the device is offered again when it next reports its
// version (on every connect), when it turns alive again (view.go) or when
// the catalog changes. Repeats are harmless; the agent ignores an offer
// of what it runs or is installing, and every offer has an id of its own.
//
// Every offer carries the release's signature, when it has one, and a
// download link signed with the link key that expires with the offer
// (package downloadlink).
package decision

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"golang.org/x/sync/errgroup"

	"github.com/thinfleet/thinfleet/downloadlink"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// Options configure the decision service.
type Options struct {
	Log   *slog.Logger // slog.Default() when nil
	Store *store.Store // required
	// Conn publishes the offers; required.
	Conn *nats.Conn
	// PublicURL is the base of download links, such as
	// http://updates.example.com:8080; required.
	PublicURL string
	// LinkKey is the secret that signs the download links in offers,
	// shared with the web server that checks them; required, at least
	// downloadlink.MinKeyLength bytes.
	LinkKey []byte
	// Retry is the automatic retry of failed installs; its zero fields
	// take DefaultRetry's.
	Retry RetryPolicy
	// InFlight bounds the history appends on their way at once (256).
	InFlight int
	// Metrics count what the service refuses and does; nil counts nothing.
	Metrics *metrics.Metrics
	// Now is the clock of the maintenance windows (time.Now when nil).
	Now func() time.Time
	// WindowCheck is how often the service looks whether a maintenance
	// window opened (30 s), and whether an offer to a rollout's member
	// that was never reported frees its slot of the rollout's
	// MaxConcurrent.
	WindowCheck time.Duration
	// OfferGrace is how long an offer not yet reported on counts as an
	// install in progress for a rollout's MaxConcurrent (3 minutes).
	OfferGrace time.Duration
}

// RetryPolicy says when a failed install is tried again.
type RetryPolicy struct {
	// First is the pause after the first failure; each later pause is
	// twice the one before, at most Last.
	First, Last time.Duration
	// Tries is how many failed installs of one release hold a device
	// back.
	Tries int
}

// DefaultRetry tries a failed install again after 30 s, 1, 2 and 4
// minutes, and holds the device back at the fifth failure.
var DefaultRetry = RetryPolicy{First: 30 * time.Second, Last: 30 * time.Minute, Tries: 5}

// Service decides which device gets which offer.
type Service struct {
	log      *slog.Logger
	store    *store.Store
	nc       *nats.Conn
	base     string
	key      []byte
	retry    RetryPolicy
	inFlight int

	metrics *metrics.Metrics
	rec     *store.Recorder
	catalog atomic.Pointer[fleet.Catalog]

	// mu guards devices, the copy of the devices bucket (view.go).
	mu      sync.RWMutex
	devices map[string]fleet.Device
	ready   chan struct{} // closed once devices holds the whole bucket

	retries retrier
	// background runs the history appends of catalog changes.
	background sync.WaitGroup

	now         func() time.Time
	windowCheck time.Duration
	offerGrace  time.Duration
	// policy is the groups and rollouts that Plan reads (plan.go), made
	// from groups and rollouts under pmu.
	policy   atomic.Pointer[policy]
	pmu      sync.Mutex
	groups   *policyWatch[fleet.Group]
	rollouts *policyWatch[fleet.Rollout]
	// started is set once the catalog, groups, rollouts and devices are
	// read: no offer goes out before, since a rollout not yet read would
	// not hold its release back.
	started atomic.Bool
	// om guards sent, what was last offered each device, and the gates
	// of an offer (plan.go). Lock order: om, then mu.
	om   sync.Mutex
	sent map[string]sent
}

// New checks opts and returns a service ready to Run.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Conn == nil {
		return nil, errors.New("decision: Store and Conn are required")
	}
	u, err := url.Parse(opts.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("decision: public URL %q: want an absolute http or https URL", opts.PublicURL)
	}
	if len(opts.LinkKey) < downloadlink.MinKeyLength {
		return nil, fmt.Errorf("decision: LinkKey, the secret that signs download links, must be at least %d bytes", downloadlink.MinKeyLength)
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	r := opts.Retry
	if r.First <= 0 {
		r.First = DefaultRetry.First
	}
	if r.Last <= 0 {
		r.Last = max(DefaultRetry.Last, r.First)
	}
	if r.Tries <= 0 {
		r.Tries = DefaultRetry.Tries
	}
	s := &Service{
		log: opts.Log, store: opts.Store, nc: opts.Conn, base: strings.TrimRight(opts.PublicURL, "/"), key: opts.LinkKey,
		retry: r, inFlight: opts.InFlight, metrics: opts.Metrics,
		devices: map[string]fleet.Device{}, ready: make(chan struct{}),
		retries: newRetrier(),
		now:     opts.Now, windowCheck: cmp.Or(opts.WindowCheck, 30*time.Second),
		offerGrace: cmp.Or(opts.OfferGrace, 3*time.Minute),
		groups:     newPolicyWatch[fleet.Group](), rollouts: newPolicyWatch[fleet.Rollout](),
		sent: map[string]sent{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.policy.Store(&policy{})
	return s, nil
}

// ConsumerName is the durable consumer the service reads through.
const ConsumerName = "decision"

// Run offers updates until ctx ends: to each device that reports an older
// version, to every alive device below the target whenever the catalog
// changes, to a device below it that turns alive again, and to a device
// whose failed install is due to be tried again. It returns once ctx has
// ended, its goroutines (the consumer, the catalog and device watches and
// the retries) have returned and the history appends on their way are
// acknowledged (for at most five seconds); an error only when the
// consumer cannot be set up. Run is called once.
func (s *Service) Run(ctx context.Context) error {
	s.rec = s.store.NewRecorder(s.log, s.metrics, s.inFlight)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.rec.Close(cctx)
	}()
	if !s.loadCatalog(ctx) {
		return nil
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.watchGroups(ctx) })
	g.Go(func() error { return s.watchRollouts(ctx) })
	for _, loaded := range []chan struct{}{s.groups.loaded, s.rollouts.loaded} {
		select {
		case <-loaded:
		case <-ctx.Done():
			err := g.Wait()
			s.background.Wait()
			return err
		}
	}
	g.Go(func() error { return s.watchDevices(ctx) })
	select {
	case <-s.ready:
	case <-ctx.Done():
		err := g.Wait()
		s.background.Wait()
		return err
	}
	s.started.Store(true)
	g.Go(func() error { return s.watchWindows(ctx) })
	g.Go(func() error {
		return s.store.ConsumeAgentAsync(ctx, s.log, s.metrics, ConsumerName, []string{wire.AllVersionsInstalled}, s.handleInstalled)
	})
	g.Go(func() error { return s.watchCatalog(ctx) })
	g.Go(func() error { return s.runRetries(ctx) })
	err := g.Wait()
	s.background.Wait()
	return err
}

// loadCatalog reads the catalog the reports are judged against until the
// catalog watch delivers it, trying again while the store does not
// answer; false when ctx ended first.
func (s *Service) loadCatalog(ctx context.Context) bool {
	for attempt := 1; ; attempt++ {
		c, err := s.store.Catalog(ctx)
		if err == nil {
			s.catalog.Store(&c)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.log.Warn("read catalog, will retry", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(time.Duration(attempt)*time.Second, 10*time.Second)):
		}
	}
}

// watchCatalog calls catalogChanged on every catalog until ctx ends,
// watching again after a pause if the watch breaks (the connection was
// lost): a fresh watch starts with the current catalog, so nothing is
// missed.
func (s *Service) watchCatalog(ctx context.Context) error {
	s.store.Rewatch(ctx, s.log, "catalog", func(ctx context.Context) error {
		return s.store.WatchCatalog(ctx, func(c store.Change[fleet.Catalog]) error {
			if !c.Loaded {
				s.catalogChanged(ctx, c.Value)
			}
			return nil
		})
	})
	return nil
}

// handleInstalled answers a version.installed report with the device's
// plan. The report may be handled before inventory has created the device
// record, so the report's own version decides, unless the record holds a
// newer one (the report is an old one, redelivered). The report is
// acknowledged once the offer is in the history.
func (s *Service) handleInstalled(ctx context.Context, m store.AgentMessage, done func(error)) {
	v, err := wire.Decode[wire.VersionInstalled](m.Data)
	if err != nil {
		done(store.Permanent(err))
		return
	}
	d, known := s.device(m.Device)
	if !known {
		d = fleet.Device{ID: m.Device}
	}
	if d.Version == "" || wire.Newer(v.Version, d.Version) {
		d.Version = v.Version
	}
	d.Alive = true // it just reported
	t := s.plan(d)
	if !t.OK || time.Now().Before(t.NotBefore) {
		s.log.Debug("no offer", "device", m.Device, "version", t.Release.Version, "reason", t.Why)
		done(nil)
		return
	}
	cs := s.admit([]candidate{{d, t}}, true)
	if len(cs) == 0 {
		done(nil)
		return
	}
	e, err := s.publish(m.Device, v.Version, t)
	if err != nil {
		done(err)
		return
	}
	s.rec.Append(ctx, e, "offered-"+m.ID, done)
}

// catalogChanged offers every alive device its plan, whether or not it
// was offered before: every offer is published first, then recorded.
func (s *Service) catalogChanged(ctx context.Context, c fleet.Catalog) {
	s.catalog.Store(&c)
	if c.Target == "" {
		s.log.Info("no target", "reason", c.TargetReason)
	}
	cs := s.admit(s.candidates(nil), true)
	// Recorded apart, so that the next catalog change is not kept
	// waiting for this one's history (at 10,000 devices, seconds of
	// appends on a disk that syncs each one). Appends not done when the
	// service stops are made again when it starts: the catalog watch
	// replays the catalog, with the same dedup ids: one event per device
	// and catalog value.
	s.offerAll(ctx, cs, "catalog changed", func(e fleet.Event, t fleet.Target) string {
		return fmt.Sprintf("offered-%s-%s-%d", e.Device, t.Release.SHA256, c.Updated.UnixNano())
	})
}

// offer offers device d its plan t, as a trigger that fires whatever was
// offered before, and records it, without waiting for the history.
func (s *Service) offer(ctx context.Context, d fleet.Device, t fleet.Target, dedup string) {
	if len(s.admit([]candidate{{d, t}}, true)) == 0 {
		return
	}
	e, err := s.publish(d.ID, d.Version, t)
	if err != nil {
		s.log.Error("offer", "device", d.ID, "version", t.Release.Version, "err", err)
		return
	}
	s.rec.Append(ctx, e, dedup, s.logAppend(e))
}

// logAppend is the done function of an append nothing waits for.
func (s *Service) logAppend(e fleet.Event) func(error) {
	return func(err error) {
		if err != nil {
			s.log.Error("record offer", "device", e.Device, "version", e.Version, "err", err)
		}
	}
}

// publish publishes the offer of plan t to device id, installed on it
// now, and returns the history event that records it.
func (s *Service) publish(id, installed string, t fleet.Target) (fleet.Event, error) {
	p, err := s.prepare(t.Release, time.Now())
	if err != nil {
		return fleet.Event{}, err
	}
	e, offer, err := s.send(p, id, installed, t)
	if err == nil {
		s.offered(id, offer)
	}
	return e, err
}

// prepared is the offer of a release that every device is sent, each
// with an id of its own: encoded once for each of Retry and Rollback, the
// id written into a copy for each device.
type prepared struct {
	offer wire.Offer
	data  [4][]byte // by variant
}

// variant is the index in prepared.data of the offer with retry and
// rollback.
func variant(retry, rollback bool) int {
	i := 0
	if retry {
		i |= 1
	}
	if rollback {
		i |= 2
	}
	return i
}

// idStart is where the id's characters begin in an encoded offer: the id
// is its first field, and every id (a nuid) has the same length.
var idStart = len(`{"id":"`)

// prepare makes the offer of r at now, and checks it once.
func (s *Service) prepare(r fleet.Release, now time.Time) (*prepared, error) {
	now = now.UTC()
	o := wire.Offer{
		ID: nuid.Next(), Name: r.Name, Version: r.Version, SHA256: r.SHA256, Size: r.Size,
		Command: r.Command, URL: s.base + downloadlink.Path(s.key, r.File, now.Add(downloadlink.Lifetime)),
		Time: now, Signature: r.Signature,
	}
	if err := o.Validate(); err != nil {
		// The catalog checks every release; this guards the agent anyway.
		return nil, fmt.Errorf("release %s is not offerable: %w", r.Version, err)
	}
	p := &prepared{offer: o}
	for i := range p.data {
		o.Retry, o.Rollback = i&1 != 0, i&2 != 0
		data, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("encode offer: %w", err)
		}
		if !bytes.HasPrefix(data, []byte(`{"id":"`+o.ID+`"`)) {
			return nil, errors.New("encode offer: the id is not its first field")
		}
		p.data[i] = data
	}
	return p, nil
}

// send publishes prepared offer p to device id with an id of its own,
// marked as plan t says (Retry, Rollback), and returns the history event
// that records it and the offer's id.
func (s *Service) send(p *prepared, id, installed string, t fleet.Target) (fleet.Event, string, error) {
	o := p.offer
	data := slices.Clone(p.data[variant(t.Retry, t.Rollback)])
	o.ID = nuid.Next()
	if copy(data[idStart:], o.ID) != len(p.offer.ID) || len(o.ID) != len(p.offer.ID) {
		return fleet.Event{}, "", errors.New("encode offer: ids of different lengths")
	}
	if err := s.nc.Publish(wire.OfferSubject(id), data); err != nil {
		return fleet.Event{}, "", fmt.Errorf("publish offer: %w", err)
	}
	s.metrics.OfferSent()
	from := installed
	if from == "" {
		from = "no version"
	}
	if t.Retry {
		s.metrics.InstallRetry()
	}
	detail := fmt.Sprintf("offer %s, from %s%s", o.ID, from, describe(t))
	s.log.Debug("offered", "device", id, "version", o.Version, "from", installed, "offer", o.ID, "retry", t.Retry, "rollback", t.Rollback, "why", t.Why)
	return fleet.Event{Time: o.Time, Device: id, Event: fleet.EventOffered, Version: o.Version, Detail: detail}, o.ID, nil
}
