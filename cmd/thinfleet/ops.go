package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/retry"
	"github.com/thinfleet/thinfleet/store"
)

// clusterFlags are "thinfleet broker"'s cluster flags.
type clusterFlags struct {
	listen, name, routes string
	replicas             int
}

func clusterFlagsOn(fs *flag.FlagSet) *clusterFlags {
	var f clusterFlags
	fs.StringVar(&f.listen, "cluster", "", "join a NATS cluster: the `address` other nodes connect to, e.g. :6222 (needs --server-name)")
	fs.StringVar(&f.name, "cluster-name", "thinfleet", "the cluster's name, the same on every node")
	fs.StringVar(&f.routes, "routes", "", "the cluster's nodes as host:port, comma separated (this node may be listed too)")
	fs.IntVar(&f.replicas, "replicas", 1, "replicas of the buckets and streams the broker opens: 3 on a three-node cluster, as every service's")
	return &f
}

// broker returns the broker's cluster options; nil without --cluster.
func (c *clusterFlags) broker() *broker.Cluster {
	if c.listen == "" {
		return nil
	}
	return &broker.Cluster{Name: c.name, Listen: c.listen, Routes: broker.SplitRoutes(c.routes)}
}

// serveOps serves /metrics (reg), /healthz and /readyz on --metrics, when set,
// until ctx ends. ready says whether the process can do its work.
func serveOps(ctx context.Context, addr string, reg prometheus.Gatherer, log *slog.Logger, ready func(context.Context) error) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		if err := ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "{\"status\":\"not ready\",\"error\":%q}\n", err.Error())
			return
		}
		fmt.Fprintln(w, `{"status":"ready"}`)
	})
	log.Info("metrics and health", "http", ln.Addr().String())
	// Scrapers and health checks send small requests and read at once.
	return serveHTTP(ctx, mux, ln, httpLimits{readTimeout: 10 * time.Second, idleTimeout: time.Minute})
}

// storeReady opens a store on its own connection for a service's /readyz:
// the service's broker reachable and every bucket answering.
func storeReady(ctx context.Context, d dialer, name string) (func(context.Context) error, error) {
	_, store, err := openStore(ctx, d, name+"-ready")
	if err != nil {
		return nil, err
	}
	return store.Ready, nil
}

// brokerReady is the broker's /readyz: a client connection as the service
// user gets an answer from JetStream, which on a cluster needs a leader.
func brokerReady(b *broker.Broker) (func(context.Context) error, func(), error) {
	nc, err := b.ConnectService("thinfleet-broker-ready")
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return func(ctx context.Context) error {
		if err := b.Fault(); err != nil {
			return err
		}
		if _, err := js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		return nil
	}, nc.Close, nil
}

func healthcheckFlags(fs *flag.FlagSet) func(context.Context, env) error {
	url := fs.String("url", "http://127.0.0.1:8080/healthz", "the `URL` to ask")
	return func(ctx context.Context, e env) error { return runHealthcheck(ctx, *url, e.stdout) }
}

// runHealthcheck asks url and fails unless it answers 200. Containers
// built FROM scratch have no curl: their health check runs this.
func runHealthcheck(ctx context.Context, url string, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(stdout, "%s", body)
	return nil
}

// tokensOptions are "thinfleet tokens"'s.
type tokensOptions struct {
	data      *string
	dashboard string
	// The published ports the addresses are printed with (PORT or
	// HOST:PORT, as docker compose's ports take them).
	httpPort, natsPort string
}

func tokensFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := tokensOptions{data: dataFlag(fs)}
	fs.StringVar(&o.dashboard, "dashboard", "", "the dashboard's `URL`, to print with the tokens (default: from --http-port)")
	fs.StringVar(&o.httpPort, "http-port", "", "the dashboard's published `port`, PORT or HOST:PORT (docker compose's THINFLEET_HTTP_PORT)")
	fs.StringVar(&o.natsPort, "nats-port", "4222", "the broker's published `port`, PORT or HOST:PORT (docker compose's THINFLEET_NATS_PORT)")
	return func(ctx context.Context, e env) error { return runTokens(o, e.stdout) }
}

// runTokens makes the server's tokens in --data unless they are there, and
// prints them. It reads no environment: under docker compose it fills the
// shared tokens volume once, and every container reads its token from
// there (THINFLEET_<NAME>_TOKEN_FILE).
func runTokens(o tokensOptions, stdout io.Writer) error {
	data := *o.data
	sec, err := loadSecrets(data, func(string) string { return "" })
	if err != nil {
		return err
	}
	state := "kept"
	if len(sec.generated) > 0 {
		state = "generated " + strings.Join(sec.generated, ", ") + ","
	}
	fmt.Fprintf(stdout, "thinfleet tokens (%s in %s)\n", state, data)
	fmt.Fprintf(stdout, "  admin token : %s  (dashboard and API: Authorization: Bearer <token>)\n", sec.admin)
	natsHost, natsPort := published(o.natsPort)
	fmt.Fprintf(stdout, "  enroll token: %s  (agents: thinfleet-agent --server nats://%s --enroll-token <token>)\n",
		sec.enroll, net.JoinHostPort(cmp.Or(natsHost, "HOST"), natsPort))
	fmt.Fprintf(stdout, "  service token in %s\n", filepath.Join(data, "service.token"))
	dashboard := o.dashboard
	if httpHost, httpPort := published(o.httpPort); dashboard == "" && httpPort != "" {
		dashboard = "http://" + net.JoinHostPort(cmp.Or(httpHost, "localhost"), httpPort)
	}
	if dashboard != "" {
		fmt.Fprintf(stdout, "  dashboard and API: %s  (log in with the admin token)\n", dashboard)
	}
	return nil
}

// published splits a published port, PORT or HOST:PORT as docker
// compose's ports take it, into the host clients reach it at ("" when it
// listens on every address) and the port.
func published(p string) (host, port string) {
	p = strings.TrimSpace(p)
	h, port, err := net.SplitHostPort(p)
	if err != nil {
		return "", p // a port alone
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		return "", port
	}
	return h, port
}

// runWithOps runs a service with its --metrics listener beside it.
func runWithOps(ctx context.Context, d dialer, addr string, reg prometheus.Gatherer, name string, log *slog.Logger, start func(context.Context) error) error {
	if addr == "" {
		return start(ctx)
	}
	ready, err := storeReady(ctx, d, name)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return start(gctx) })
	g.Go(func() error { return serveOps(gctx, addr, reg, log, ready) })
	return g.Wait()
}

// serveBrokerOps serves the broker's --metrics listener, when set, until
// ctx ends.
func serveBrokerOps(ctx context.Context, addr string, reg prometheus.Gatherer, b *broker.Broker, log *slog.Logger) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	ready, closeReady, err := brokerReady(b)
	if err != nil {
		return err
	}
	defer closeReady()
	return serveOps(ctx, addr, reg, log, ready)
}

// openWait bounds how long a service waits at start for JetStream to
// answer: a cluster elects its leaders in the first seconds after its
// nodes start, and every service may start before that.
const openWait = 60 * time.Second

// openFleet opens the fleet state, trying again while JetStream does not
// answer yet, for up to openWait. On a cluster, services that create the
// same replicated streams at the same moment stall each other's requests
// until they time out, so there each attempt is short and starts after a
// random pause: one of them goes first, and the others find the streams
// made.
func openFleet(ctx context.Context, js jetstream.JetStream, opts store.Options) (*store.Store, error) {
	deadline := time.Now().Add(openWait)
	var st *store.Store
	pause := retry.Backoff{Pause: time.Second}
	if opts.Replicas > 1 {
		pause.Pause = 0 // the random pause before each attempt is enough
	}
	err := retry.Do(ctx, pause, func(int) error {
		if opts.Replicas > 1 && !retry.Sleep(ctx, rand.N(2*time.Second)) {
			return ctx.Err()
		}
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		var err error
		st, err = store.Open(actx, js, opts)
		if err != nil && time.Now().After(deadline) {
			return retry.Final(err)
		}
		return err
	})
	return st, err
}
