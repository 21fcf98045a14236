// Package decision offers updates: it compares what each device reports
// installed with the catalog's target, and publishes an offer on
// update.offer.<id> to every device below it. It never offers a
// downgrade, and it does not offer again a version whose install failed on
// that device, unless the failure was an interruption (the agent retries
// those by itself after a crash).
//
// Offers go out on core NATS: an offer to a device that is not listening
// is lost, and the device is offered again when it next reports its
// version (on every connect), when it turns alive again (alive.go) or when
// the catalog changes. Repeats are
// harmless; the agent ignores an offer of what it runs or is installing.
//
// Every offer carries the release's signature, when it has one, and a
// download link signed with the link key that expires with the offer
// (package downloadlink).
package decision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
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
	Log *slog.Logger // slog.Default() when nil
	// Metrics count what the service refuses and does; nil counts nothing.
	Metrics *metrics.Metrics
	Store   *store.Store // required
	// Conn publishes the offers; required.
	Conn *nats.Conn
	// PublicURL is the base of download links, such as
	// http://updates.example.com:8080; required.
	PublicURL string
	// LinkKey is the secret that signs the download links in offers,
	// shared with the web server that checks them; required, at least
	// downloadlink.MinKeyLength bytes.
	LinkKey []byte
}

// Service decides which device gets which offer.
type Service struct {
	metrics *metrics.Metrics
	log     *slog.Logger
	store   *store.Store
	nc      *nats.Conn
	base    string
	key     []byte
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
	return &Service{metrics: opts.Metrics, log: opts.Log, store: opts.Store, nc: opts.Conn, base: strings.TrimRight(opts.PublicURL, "/"), key: opts.LinkKey}, nil
}

// ConsumerName is the durable consumer the service reads through.
const ConsumerName = "decision"

// Run offers updates until ctx ends: to each device that reports an older
// version, to every alive device below the target whenever the catalog
// changes, and to a device below it that turns alive again. It returns
// once ctx has ended and its goroutines (the consumer, the catalog watch
// and the device watch) have returned; an error only when the consumer
// cannot be set up.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return s.store.ConsumeAgent(ctx, s.log, s.metrics, ConsumerName, []string{wire.AllVersionsInstalled}, s.handleInstalled)
	})
	g.Go(func() error { return s.watchCatalog(ctx) })
	g.Go(func() error { return s.watchAlive(ctx) })
	return g.Wait()
}

// watchCatalog calls catalogChanged on every catalog until ctx ends,
// watching again after a pause if the watch breaks (the connection was
// lost): a fresh watch starts with the current catalog, so nothing is
// missed.
func (s *Service) watchCatalog(ctx context.Context) error {
	store.Rewatch(ctx, s.log, "catalog", func(ctx context.Context) error {
		return s.store.WatchCatalog(ctx, func(c store.Change[fleet.Catalog]) error {
			if !c.Loaded {
				s.catalogChanged(ctx, c.Value)
			}
			return nil
		})
	})
	return nil
}

// handleInstalled answers a version.installed report. The report may be
// handled before inventory has created the device record, so the report's
// own version decides; a record that already holds the target (the report
// is an old one, redelivered) holds the offer back too.
func (s *Service) handleInstalled(ctx context.Context, m store.AgentMessage) error {
	v, err := wire.Decode[wire.VersionInstalled](m.Data)
	if err != nil {
		return store.Permanent(err)
	}
	c, err := s.store.Catalog(ctx)
	if err != nil {
		return err
	}
	target, ok := c.TargetRelease()
	if !ok || !wire.Newer(target.Version, v.Version) {
		return nil
	}
	d, err := s.store.Device(ctx, m.Device)
	switch {
	case errors.Is(err, store.ErrNotFound):
		d = fleet.Device{ID: m.Device, Version: v.Version}
	case err != nil:
		return err
	}
	if why := holdBack(d, target); why != "" {
		s.log.Debug("no offer", "device", m.Device, "version", target.Version, "reason", why)
		return nil
	}
	return s.offer(ctx, m.Device, v.Version, target, "offered-"+m.ID)
}

// catalogChanged offers the target to every alive device below it.
func (s *Service) catalogChanged(ctx context.Context, c fleet.Catalog) {
	target, ok := c.TargetRelease()
	if !ok {
		s.log.Info("nothing to offer", "reason", c.TargetReason)
		return
	}
	devices, err := s.store.Devices(ctx)
	if err != nil {
		// Devices not offered now are offered when they next report.
		s.log.Error("catalog changed, cannot list devices", "err", err)
		return
	}
	n := 0
	for _, d := range devices {
		if !d.Alive || !wire.Newer(target.Version, d.Version) {
			continue
		}
		if why := holdBack(d, target); why != "" {
			s.log.Debug("no offer", "device", d.ID, "version", target.Version, "reason", why)
			continue
		}
		// One event per device and catalog value: a watch that replays
		// the same catalog does not repeat it.
		dedup := fmt.Sprintf("offered-%s-%s-%d", d.ID, target.SHA256, c.Updated.UnixNano())
		if err := s.offer(ctx, d.ID, d.Version, target, dedup); err != nil {
			s.log.Error("offer", "device", d.ID, "version", target.Version, "err", err)
			continue
		}
		n++
	}
	s.log.Info("catalog changed", "target", target.Version, "offers", n)
}

// holdBack says why device d must not be offered release r now, or "".
func holdBack(d fleet.Device, r fleet.Release) string {
	if d.Version != "" && !wire.Newer(r.Version, d.Version) {
		return "device runs " + d.Version
	}
	in := d.Install
	if in == nil || in.State != wire.StateFailed {
		return ""
	}
	if c, err := wire.CompareVersions(in.Version, r.Version); err != nil || c != 0 {
		return ""
	}
	if strings.HasPrefix(in.Detail, "interrupted") {
		return ""
	}
	return "its install of this version failed"
}

// offer publishes an offer of r to device id and records it.
func (s *Service) offer(ctx context.Context, id, installed string, r fleet.Release, dedup string) error {
	now := time.Now().UTC()
	o := wire.Offer{
		ID: nuid.Next(), Name: r.Name, Version: r.Version, SHA256: r.SHA256, Size: r.Size,
		Command: r.Command, URL: s.base + downloadlink.Path(s.key, r.File, now.Add(downloadlink.Lifetime)),
		Time: now, Signature: r.Signature,
	}
	if err := o.Validate(); err != nil {
		// The catalog checks every release; this guards the agent anyway.
		return fmt.Errorf("release %s is not offerable: %w", r.Version, err)
	}
	data, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode offer: %w", err)
	}
	if err := s.nc.Publish(wire.OfferSubject(id), data); err != nil {
		return fmt.Errorf("publish offer: %w", err)
	}
	s.metrics.OfferSent()
	from := installed
	if from == "" {
		from = "no version"
	}
	e := fleet.Event{
		Time: o.Time, Device: id, Event: fleet.EventOffered, Version: r.Version,
		Detail: fmt.Sprintf("offer %s, from %s", o.ID, from),
	}
	if err := s.store.AppendEvent(ctx, e, dedup); err != nil {
		return err
	}
	s.log.Info("offered", "device", id, "version", r.Version, "from", installed, "offer", o.ID)
	return nil
}
