package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/bundle"
	"github.com/thinfleet/thinfleet/services/catalog"
	"github.com/thinfleet/thinfleet/services/decision"
	"github.com/thinfleet/thinfleet/services/history"
	"github.com/thinfleet/thinfleet/services/intake"
	"github.com/thinfleet/thinfleet/services/inventory"
	"github.com/thinfleet/thinfleet/services/presence"
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

func networkDialer(o *options) (dialer, error) {
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
			nc, err := nats.Connect(o.natsURL, opts...)
			if err != nil {
				return nil, fmt.Errorf("connect to %s: %w", o.natsURL, err)
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

// part builds one service and returns its Run.
type part func(ctx context.Context, d dialer, o *options, log *slog.Logger) (func(context.Context) error, error)

var parts = map[string]part{
	"catalog": func(ctx context.Context, d dialer, o *options, log *slog.Logger) (func(context.Context) error, error) {
		_, store, err := openStore(ctx, d, "catalog")
		if err != nil {
			return nil, err
		}
		s, err := catalog.New(catalog.Options{Log: log, Store: store, Dir: o.updates, Rescan: o.rescan, Limits: bundle.DefaultLimits, PublisherKey: o.keys.publisher.key})
		if err != nil {
			return nil, err
		}
		return s.Run, nil
	},
	"decision": func(ctx context.Context, d dialer, o *options, log *slog.Logger) (func(context.Context) error, error) {
		nc, store, err := openStore(ctx, d, "decision")
		if err != nil {
			return nil, err
		}
		if o.publicURL == "" {
			return nil, errors.New("decision: --public-url is required: the base URL agents download updates from")
		}
		s, err := decision.New(decision.Options{Log: log, Store: store, Conn: nc, PublicURL: o.publicURL, LinkKey: []byte(o.keys.download)})
		if err != nil {
			return nil, err
		}
		return s.Run, nil
	},
	"presence": func(ctx context.Context, d dialer, o *options, log *slog.Logger) (func(context.Context) error, error) {
		nc, store, err := openStore(ctx, d, "presence")
		if err != nil {
			return nil, err
		}
		sys, err := d.system("thinfleet-presence-events")
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, sys.Close)
		s, err := presence.New(presence.Options{Log: log, Store: store, Conn: nc, SysConn: sys, Account: d.account})
		if err != nil {
			return nil, err
		}
		return s.Run, nil
	},
	"inventory": func(ctx context.Context, d dialer, o *options, log *slog.Logger) (func(context.Context) error, error) {
		_, store, err := openStore(ctx, d, "inventory")
		if err != nil {
			return nil, err
		}
		s, err := inventory.New(inventory.Options{Log: log, Store: store})
		if err != nil {
			return nil, err
		}
		return s.Run, nil
	},
	"intake": func(ctx context.Context, d dialer, o *options, log *slog.Logger) (func(context.Context) error, error) {
		nc, err := d.service("thinfleet-intake")
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { _ = nc.Drain() })
		s, err := intake.New(intake.Options{Log: log, Conn: nc})
		if err != nil {
			return nil, err
		}
		return s.Run, nil
	},
	"history": func(ctx context.Context, d dialer, o *options, log *slog.Logger) (func(context.Context) error, error) {
		_, store, err := openStore(ctx, d, "history")
		if err != nil {
			return nil, err
		}
		s, err := history.New(history.Options{Log: log, Store: store})
		if err != nil {
			return nil, err
		}
		return s.Run, nil
	},
}

// newWeb builds the web server; brokerFault, when not nil, is the
// in-process broker's fault, which makes /readyz answer not ready.
func newWeb(ctx context.Context, d dialer, o *options, adminToken string, brokerFault func() error, log *slog.Logger) (http.Handler, error) {
	nc, store, err := openStore(ctx, d, "web")
	if err != nil {
		return nil, err
	}
	s, err := web.New(web.Options{Log: log, Store: store, Conn: nc, UpdatesDir: o.updates, AdminToken: adminToken, PublicURL: o.publicURL, LinkKey: []byte(o.keys.download), BrokerFault: brokerFault, WriteStall: o.httpLimits.writeStall})
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, s.Close) // ends the live streams at shutdown
	return s.Handler(), nil
}

// runAlone runs one service against the NATS server at --nats-url.
func runAlone(name string) func(context.Context, *options, *slog.Logger, func(string) string, io.Writer) error {
	return func(ctx context.Context, o *options, log *slog.Logger, getenv func(string) string, stdout io.Writer) error {
		admin := getenv("THINFLEET_ADMIN_TOKEN")
		if name == "web" {
			if admin == "" {
				return errors.New("web: set THINFLEET_ADMIN_TOKEN, the token the API asks for")
			}
			if err := strongAdminToken(admin, "THINFLEET_ADMIN_TOKEN"); err != nil {
				return err
			}
		}
		d, err := networkDialer(o)
		if err != nil {
			return err
		}
		log = log.With("service", name)
		if name == "web" {
			tlsConf, err := o.tlsConfig()
			if err != nil {
				return err
			}
			ln, err := o.listenHTTP(tlsConf, log)
			if err != nil {
				return err
			}
			h, err := newWeb(ctx, d, o, admin, nil, log)
			if err != nil {
				ln.Close()
				return err
			}
			log.Info("web running", "http", ln.Addr().String(), "nats", o.natsURL)
			return serveHTTP(ctx, h, ln, o.httpLimits)
		}
		start, err := parts[name](ctx, d, o, log)
		if err != nil {
			return err
		}
		log.Info("service running", "nats", strings.Split(o.natsURL, ",")[0])
		return runWithOps(ctx, d, o, name, log, start)
	}
}
