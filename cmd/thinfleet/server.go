package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/fdlimit"
	"github.com/thinfleet/thinfleet/metrics"
)

// shutdownGrace bounds how long a stopping server waits for work in flight.
const shutdownGrace = 10 * time.Second

// serverOptions are "thinfleet server"'s.
type serverOptions struct {
	data      *string
	updates   *updatesFlags
	http      *httpFlags
	nats      *listenFlags
	tls       *tlsFlags
	publicURL *string
	publisher *publisherKey
	approve   *bool
	limits    *enrollLimits
	retry     *retryFlags
	memory    *memoryFlags
}

func serverFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := serverOptions{
		data: dataFlag(fs), updates: updatesFlagsOn(fs), http: httpFlagsOn(fs), nats: listenFlagsOn(fs),
		tls: tlsFlagsOn(fs), publicURL: publicURLFlag(fs), publisher: publisherKeyFlag(fs), approve: approveFlag(fs),
		limits: enrollLimitsOn(fs), retry: retryFlagsOn(fs), memory: memoryFlagsOn(fs),
	}
	return func(ctx context.Context, e env) error { return runServer(ctx, o, e) }
}

func runServer(ctx context.Context, o serverOptions, e env) error {
	log := e.log
	memLimit, memFrom, err := o.memory.apply(e.getenv)
	if err != nil {
		return err
	}
	if err := o.retry.check(); err != nil {
		return err
	}
	if err := os.MkdirAll(o.updates.dir, 0o755); err != nil {
		return fmt.Errorf("make updates folder: %w", err)
	}
	tlsConf, err := o.tls.config()
	if err != nil {
		return err
	}
	// One registry for the whole process: /metrics serves it.
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	b, sec, d, err := startBroker(brokerConfig{data: *o.data, listen: o.nats, tls: tlsConf, metrics: m}, e.getenv, log)
	if err != nil {
		return err
	}
	defer b.Shutdown()
	if err := strongAdminToken(sec.admin, sec.adminFrom); err != nil {
		return err
	}
	ln, err := listenHTTP(o.http, *o.publicURL, tlsConf, log)
	if err != nil {
		return err
	}
	defer ln.Close()
	cfg := partConfig{
		updates: o.updates.dir, rescan: o.updates.rescan, publisherKey: o.publisher.key,
		publicURL: ln.publicURL, downloadKey: sec.download, retry: o.retry.policy, metrics: m, tune: e.tune,
	}

	// Every part is made first and started after the banner, so that the
	// banner comes before the parts' log lines.
	g, gctx := errgroup.WithContext(ctx)
	var runs []func(context.Context) error
	for _, name := range []string{"intake", "catalog", "decision", "presence", "inventory", "history"} {
		start, err := parts[name](gctx, d, cfg, log.With("service", name))
		if err != nil {
			return err
		}
		runs = append(runs, start)
	}
	enrollRun, err := startEnroll(gctx, d, enrollConfig{serviceToken: sec.service, enrollToken: sec.enroll, approve: *o.approve, metrics: m, limits: *o.limits}, log.With("service", "enroll"))
	if err != nil {
		return err
	}
	wc := webConfig{partConfig: cfg, adminToken: sec.admin, brokerFault: b.Fault, writeStall: ln.limits.writeStall, gatherer: reg}
	srv, err := newWeb(gctx, d, wc, log.With("service", "web"))
	if err != nil {
		return err
	}
	runs = append(runs, enrollRun, func(ctx context.Context) error { return serveHTTP(ctx, srv, ln, ln.limits) }, b.Watch,
		func(ctx context.Context) error { return servePprof(ctx, o.memory.pprof, log) })

	printBanner(e.stdout, banner{publicURL: ln.publicURL, natsURL: advertisedNATS(ln.publicURL, b.Addr()), updates: o.updates.dir, data: *o.data}, sec)
	log.Info("thinfleet server running", "version", version, "nats", b.ClientURL(), "http", ln.Addr().String(),
		"memory_limit_mib", memLimit, "memory_limit_from", memFrom)
	for _, r := range runs {
		g.Go(func() error { return r(gctx) })
	}
	err = g.Wait()
	log.Info("thinfleet server stopped")
	return err
}

// brokerConfig is what the embedded broker starts with.
type brokerConfig struct {
	data   string
	listen *listenFlags
	tls    *tls.Config
	// cluster, when not nil, joins a cluster; replicas are those of the
	// services' buckets and streams.
	cluster  *broker.Cluster
	replicas int
	metrics  *metrics.Metrics
}

// startBroker starts the embedded broker with the tokens (from the
// environment or the data folder), and returns it with the tokens and
// the in-process dialer of the services that run beside it. The server is
// named --server-name, or else the host name: a name that stays the same
// across restarts, which labels the broker's metrics.
func startBroker(c brokerConfig, getenv func(string) string, log *slog.Logger) (*broker.Broker, secrets, dialer, error) {
	sec, err := loadSecrets(c.data, getenv)
	if err != nil {
		return nil, secrets{}, dialer{}, err
	}
	b, err := broker.Start(broker.Options{
		DataDir: c.data, Listen: c.listen.addr, ServerName: cmp.Or(c.listen.serverName, hostName()),
		ServiceToken: sec.service, EnrollToken: sec.enroll, TLS: c.tls, Log: log, Metrics: c.metrics,
		Cluster: c.cluster,
	})
	if err != nil {
		return nil, secrets{}, dialer{}, err
	}
	d := dialer{
		service: func(name string) (*nats.Conn, error) { return b.ConnectService(name) },
		system:  func(name string) (*nats.Conn, error) { return b.ConnectSystem(name) },
		account: b.AppAccountKey(), replicas: c.replicas,
	}
	return b, sec, d, nil
}

// brokerOptions are "thinfleet broker"'s.
type brokerOptions struct {
	data    *string
	nats    *listenFlags
	tls     *tlsFlags
	ops     *string
	cluster *clusterFlags
	approve *bool
	limits  *enrollLimits
}

func brokerFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := brokerOptions{
		data: dataFlag(fs), nats: listenFlagsOn(fs), tls: tlsFlagsOn(fs), ops: opsFlag(fs),
		cluster: clusterFlagsOn(fs), approve: approveFlag(fs), limits: enrollLimitsOn(fs),
	}
	return func(ctx context.Context, e env) error { return runBroker(ctx, o, e) }
}

func runBroker(ctx context.Context, o brokerOptions, e env) error {
	log := e.log
	fdlimit.Raise(log)
	tlsConf, err := o.tls.config()
	if err != nil {
		return err
	}
	if o.cluster.listen != "" && o.nats.serverName == "" {
		// The host name is no default here: nodes may share a host.
		return errors.New("--cluster needs --server-name, a name unique in the cluster")
	}
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	b, sec, d, err := startBroker(brokerConfig{
		data: *o.data, listen: o.nats, tls: tlsConf, cluster: o.cluster.broker(), replicas: o.cluster.replicas, metrics: m,
	}, e.getenv, log)
	if err != nil {
		return err
	}
	defer b.Shutdown()
	g, gctx := errgroup.WithContext(ctx)
	enrollRun, err := startEnroll(gctx, d, enrollConfig{serviceToken: sec.service, enrollToken: sec.enroll, approve: *o.approve, metrics: m, limits: *o.limits}, log.With("service", "enroll"))
	if err != nil {
		return err
	}
	g.Go(func() error { return enrollRun(gctx) })
	// The intake is the agents' door into the agent stream; beside the
	// broker, each node of a cluster has one.
	intakeRun, err := parts["intake"](gctx, d, partConfig{metrics: m}, log.With("service", "intake"))
	if err != nil {
		return err
	}
	g.Go(func() error { return intakeRun(gctx) })
	fmt.Fprintf(e.stdout, "thinfleet broker %s\n  agents and services connect to: %s\n", version, b.ClientURL())
	g.Go(func() error { return serveBrokerOps(gctx, *o.ops, reg, b, log) })
	g.Go(func() error { return b.Watch(gctx) })
	return g.Wait()
}

// serveHTTP serves h on ln until ctx ends. It sets no WriteTimeout: the
// handler moves each response's write deadline as it writes (web's
// --http-write-stall), so long downloads and live pages that keep moving
// are not cut.
func serveHTTP(ctx context.Context, h http.Handler, ln net.Listener, lim httpLimits) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.readHeaderTimeout(),
		ReadTimeout:       lim.readTimeout,
		IdleTimeout:       lim.idleTimeout,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// publicURL is the base of download links: the flag when given, else the
// listener's address (scheme http or https) with the machine's host name
// for an unspecified IP.
func publicURL(flagValue, scheme string, addr net.Addr) string {
	if flagValue != "" {
		return strings.TrimRight(flagValue, "/")
	}
	tcp, _ := addr.(*net.TCPAddr)
	if tcp == nil {
		return scheme + "://localhost:8080"
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = cmp.Or(hostName(), "localhost")
	}
	return fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(host, fmt.Sprint(tcp.Port)))
}

// hostName is the machine's host name, "" when it has none.
func hostName() string {
	h, _ := os.Hostname()
	return h
}

// advertisedNATS is the URL agents use: the public URL's host with the
// broker's port.
func advertisedNATS(public string, addr net.Addr) string {
	host := "localhost"
	if u, err := url.Parse(public); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	port := 4222
	if tcp, ok := addr.(*net.TCPAddr); ok {
		port = tcp.Port
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// banner is what the server's banner shows.
type banner struct {
	publicURL, natsURL, updates, data string
}

// printBanner tells the operator where the server is and how agents
// join it. A token the server generated or read from the data folder is
// printed; one from the environment is not, as the operator has it.
func printBanner(w io.Writer, bn banner, sec secrets) {
	fmt.Fprintf(w, "thinfleet server %s\n", version)
	fmt.Fprintf(w, "  api and downloads: %s\n", bn.publicURL)
	fmt.Fprintf(w, "  agents connect to: %s\n", bn.natsURL)
	fmt.Fprintf(w, "  updates folder:    %s\n", bn.updates)
	fmt.Fprintf(w, "  data folder:       %s\n", bn.data)
	envName := func(file string) string {
		return "THINFLEET_" + strings.ToUpper(strings.TrimSuffix(file, ".token")) + "_TOKEN"
	}
	show := func(name, file, value string, printKept bool) {
		path := filepath.Join(bn.data, file)
		switch {
		case slices.Contains(sec.generated, file):
			fmt.Fprintf(w, "  %s: %s  (generated, kept in %s)\n", name, value, path)
		case slices.Contains(sec.fromEnv, file):
			fmt.Fprintf(w, "  %s: from %s\n", name, envName(file))
		case printKept:
			fmt.Fprintf(w, "  %s: %s  (kept in %s)\n", name, value, path)
		default:
			fmt.Fprintf(w, "  %s: in %s\n", name, path)
		}
	}
	show("admin token ", "admin.token", sec.admin, false)
	show("enroll token", "enroll.token", sec.enroll, true)
	token, note := sec.enroll, ""
	if slices.Contains(sec.fromEnv, "enroll.token") {
		token, note = "<enroll token>", "  (the server's "+envName("enroll.token")+")"
	}
	fmt.Fprintf(w, "  on each client:    thinfleet-agent --server %s --enroll-token %s%s\n", bn.natsURL, token, note)
}
