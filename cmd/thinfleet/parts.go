package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/bundle"
	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/services/catalog"
	"github.com/thinfleet/thinfleet/services/decision"
	"github.com/thinfleet/thinfleet/services/history"
	"github.com/thinfleet/thinfleet/services/intake"
	"github.com/thinfleet/thinfleet/services/inventory"
	"github.com/thinfleet/thinfleet/services/presence"
	"github.com/thinfleet/thinfleet/services/rollout"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/web"
)

// dialer opens a service's NATS connections: in-process under
// "thinfleet server", over the network when a service runs alone.
type dialer struct {
	service func(name string) (*nats.Conn, error)
	system  func(name string) (*nats.Conn, error)
	// replicas of the buckets and streams the services open (--replicas).
	replicas int
	// account is the application account's public key, which names it in
	// the broker's events.
	account string
}

func networkDialer(o *clientFlags) (dialer, error) {
	if o.serviceToken == "" {
		return dialer{}, errors.New("the service token is required: set THINFLEET_SERVICE_TOKEN (the broker keeps it in its data folder as service.token); every credential is derived from it")
	}
	account, err := broker.AppAccountKeyOf(o.serviceToken)
	if err != nil {
		return dialer{}, err
	}
	conn := func(system bool) func(string) (*nats.Conn, error) {
		return func(name string) (*nats.Conn, error) {
			creds, err := broker.ServiceCredentials(o.serviceToken, name, system)
			if err != nil {
				return nil, err
			}
			opts := []nats.Option{nats.Name(name), creds,
				nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true)}
			if o.ca != "" {
				opts = append(opts, nats.RootCAs(o.ca))
			}
			nc, err := nats.Connect(o.url, opts...)
			if err != nil {
				return nil, fmt.Errorf("connect to %s: %w", o.url, err)
			}
			return nc, nil
		}
	}
	return dialer{service: conn(false), system: conn(true), account: account, replicas: o.replicas}, nil
}

// openStore connects a service and opens the fleet state on that
// connection. The connection is closed when ctx ends.
func openStore(ctx context.Context, d dialer, name string) (*nats.Conn, *store.Store, error) {
	nc, err := d.service("thinfleet-" + name)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("%s: jetstream: %w", name, err)
	}
	store, err := openFleet(ctx, js, store.Options{Replicas: d.replicas})
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	context.AfterFunc(ctx, func() { _ = nc.Drain() })
	return nc, store, nil
}

// partConfig is what the services need besides their connections,
// derived from a command's options.
type partConfig struct {
	updates      string        // the drop folder (catalog, web)
	rescan       time.Duration // of the drop folder (catalog)
	publisherKey ed25519.PublicKey
	publicURL    string               // the base of download links (decision, web)
	downloadKey  string               // signs download links (decision, web)
	retry        decision.RetryPolicy // of failed installs (decision)
	metrics      *metrics.Metrics
	tune         tuning
}

// part builds one service and returns its Run.
type part func(ctx context.Context, d dialer, c partConfig, log *slog.Logger) (func(context.Context) error, error)

var parts = map[string]part{
	"catalog": func(ctx context.Context, d dialer, c partConfig, log *slog.Logger) (func(context.Context) error, error) {
		_, store, err := openStore(ctx, d, "catalog")
		if err != nil {
			return nil, err
		}
		s, err := catalog.New(catalog.Options{Log: log, Metrics: c.metrics, Store: store, Dir: c.updates, Rescan: c.rescan, Limits: bundle.DefaultLimits, PublisherKey: c.publisherKey})
		if err != nil {
			return nil, err
		}
		return s.Run, nil
	},
	"decision": func(ctx context.Context, d dialer, c partConfig, log *slog.Logger) (func(context.Context) error, error) {
		nc, store, err := openStore(ctx, d, "decision")
		if err != nil {
			return nil, err
		}
		if c.publicURL == "" {
			return nil, errors.New("decision: --public-url is required: the base URL agents download updates from")
		}
		s, err := decision.New(decision.Options{Log: log, Metrics: c.metrics, Store: store, Conn: nc, PublicURL: c.publicURL, LinkKey: []byte(c.downloadKey), Retry: c.retry,
			Now: c.tune.now, WindowCheck: c.tune.windowCheck})
		if err != nil {
			return nil, err
		}
		// The rollout controller runs beside the decision, which offers
		// what the rollouts it moves say: no container of its own.
		r, err := rollout.New(rollout.Options{Log: log.With("component", "rollout"), Store: store,
			Now: c.tune.now, Interval: c.tune.rolloutInterval})
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			g, ctx := errgroup.WithContext(ctx)
			g.Go(func() error { return s.Run(ctx) })
			g.Go(func() error { return r.Run(ctx) })
			return g.Wait()
		}, nil
	},
	"presence": func(ctx context.Context, d dialer, c partConfig, log *slog.Logger) (func(context.Context) error, error) {
		nc, store, err := openStore(ctx, d, "presence")
		if err != nil {
			return nil, err
		}
		sys, err := d.system("thinfleet-presence-events")
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, sys.Close)
		s, err := presence.New(presence.Options{Log: log, Metrics: c.metrics, Store: store, Conn: nc, SysConn: sys, Account: d.account})
		if err != nil {
			return nil, err
		}
		return s.Run, nil
	},
	"inventory": func(ctx context.Context, d dialer, c partConfig, log *slog.Logger) (func(context.Context) error, error) {
		_, store, err := openStore(ctx, d, "inventory")
		if err != nil {
			return nil, err
		}
		s, err := inventory.New(inventory.Options{Log: log, Metrics: c.metrics, Store: store})
		if err != nil {
			return nil, err
		}
		return s.Run, nil
	},
	"intake": func(ctx context.Context, d dialer, c partConfig, log *slog.Logger) (func(context.Context) error, error) {
		nc, err := d.service("thinfleet-intake")
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { _ = nc.Drain() })
		s, err := intake.New(intake.Options{Log: log, Metrics: c.metrics, Conn: nc})
		if err != nil {
			return nil, err
		}
		return s.Run, nil
	},
	"history": func(ctx context.Context, d dialer, c partConfig, log *slog.Logger) (func(context.Context) error, error) {
		_, store, err := openStore(ctx, d, "history")
		if err != nil {
			return nil, err
		}
		s, err := history.New(history.Options{Log: log, Metrics: c.metrics, Store: store})
		if err != nil {
			return nil, err
		}
		return s.Run, nil
	},
}

// webConfig is what the web server needs besides its connection.
type webConfig struct {
	partConfig
	adminToken string
	// brokerFault, when not nil, is the in-process broker's fault, which
	// makes /readyz answer not ready.
	brokerFault func() error
	writeStall  time.Duration
	// gatherer is the process's registry, which /metrics serves.
	gatherer prometheus.Gatherer
}

// newWeb builds the web server.
func newWeb(ctx context.Context, d dialer, c webConfig, log *slog.Logger) (http.Handler, error) {
	nc, store, err := openStore(ctx, d, "web")
	if err != nil {
		return nil, err
	}
	s, err := web.New(web.Options{
		Log: log, Metrics: c.metrics, Gatherer: c.gatherer, Store: store, Conn: nc, UpdatesDir: c.updates, AdminToken: c.adminToken, PublicURL: c.publicURL,
		LinkKey: []byte(c.downloadKey), BrokerFault: c.brokerFault, WriteStall: c.writeStall,
	})
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, s.Close) // ends the live streams at shutdown
	return s.Handler(), nil
}

// serviceOptions are those of a service that runs alone with no flags
// of its own: presence, inventory, intake, history.
type serviceOptions struct {
	client *clientFlags
	ops    *string
}

func serviceFlags(name string) func(*flag.FlagSet) func(context.Context, env) error {
	return func(fs *flag.FlagSet) func(context.Context, env) error {
		o := serviceOptions{client: clientFlagsOn(fs), ops: opsFlag(fs)}
		return func(ctx context.Context, e env) error { return runAlone(ctx, e, name, o, partConfig{}) }
	}
}

// catalogOptions are "thinfleet catalog"'s.
type catalogOptions struct {
	serviceOptions
	updates   *updatesFlags
	publisher *publisherKey
}

func catalogFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := catalogOptions{
		serviceOptions: serviceOptions{client: clientFlagsOn(fs), ops: opsFlag(fs)},
		updates:        updatesFlagsOn(fs), publisher: publisherKeyFlag(fs),
	}
	return func(ctx context.Context, e env) error {
		return runAlone(ctx, e, "catalog", o.serviceOptions, partConfig{updates: o.updates.dir, rescan: o.updates.rescan, publisherKey: o.publisher.key})
	}
}

// decisionOptions are "thinfleet decision"'s.
type decisionOptions struct {
	serviceOptions
	publicURL   *string
	downloadKey *string
	retry       *retryFlags
}

func decisionFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := decisionOptions{
		serviceOptions: serviceOptions{client: clientFlagsOn(fs), ops: opsFlag(fs)},
		publicURL:      publicURLFlag(fs), downloadKey: downloadKeyFlag(fs), retry: retryFlagsOn(fs),
	}
	return func(ctx context.Context, e env) error {
		if err := o.retry.check(); err != nil {
			return err
		}
		return runAlone(ctx, e, "decision", o.serviceOptions, partConfig{publicURL: *o.publicURL, downloadKey: *o.downloadKey, retry: o.retry.policy})
	}
}

// runAlone runs one service against the NATS server at --nats-url.
func runAlone(ctx context.Context, e env, name string, o serviceOptions, c partConfig) error {
	d, err := networkDialer(o.client)
	if err != nil {
		return err
	}
	log := e.log.With("service", name)
	reg := metrics.NewRegistry()
	c.metrics = metrics.New(reg)
	start, err := parts[name](ctx, d, c, log)
	if err != nil {
		return err
	}
	log.Info("service running", "nats", strings.Split(o.client.url, ",")[0])
	return runWithOps(ctx, d, *o.ops, reg, name, log, start)
}

// webOptions are "thinfleet web"'s.
type webOptions struct {
	client      *clientFlags
	updates     *updatesFlags
	http        *httpFlags
	tls         *tlsFlags
	publicURL   *string
	downloadKey *string
}

func webFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := webOptions{
		client: clientFlagsOn(fs), updates: updatesFlagsOn(fs), http: httpFlagsOn(fs), tls: tlsFlagsOn(fs),
		publicURL: publicURLFlag(fs), downloadKey: downloadKeyFlag(fs),
	}
	return func(ctx context.Context, e env) error { return runWeb(ctx, o, e) }
}

// runWeb runs the web server alone against --nats-url.
func runWeb(ctx context.Context, o webOptions, e env) error {
	admin := e.getenv("THINFLEET_ADMIN_TOKEN")
	if admin == "" {
		return errors.New("web: set THINFLEET_ADMIN_TOKEN, the token the API asks for")
	}
	if err := strongAdminToken(admin, "THINFLEET_ADMIN_TOKEN"); err != nil {
		return err
	}
	d, err := networkDialer(o.client)
	if err != nil {
		return err
	}
	log := e.log.With("service", "web")
	tlsConf, err := o.tls.config()
	if err != nil {
		return err
	}
	ln, err := listenHTTP(o.http, *o.publicURL, tlsConf, log)
	if err != nil {
		return err
	}
	c := webConfig{
		partConfig: partConfig{updates: o.updates.dir, publicURL: ln.publicURL, downloadKey: *o.downloadKey},
		adminToken: admin, writeStall: ln.limits.writeStall,
	}
	reg := metrics.NewRegistry()
	c.metrics, c.gatherer = metrics.New(reg), reg
	h, err := newWeb(ctx, d, c, log)
	if err != nil {
		ln.Close()
		return err
	}
	log.Info("web running", "http", ln.Addr().String(), "nats", o.client.url)
	return serveHTTP(ctx, h, ln, ln.limits)
}
