// Package agent is thinfleet's client: it runs on every managed machine,
// reports the machine's hardware and installed version to the server over
// NATS, sends heartbeats, and installs the updates it is offered.
//
// An install goes downloading → verifying → installing → installed (or
// failed), each step reported on the device's update.status subject: a
// resumable HTTP download, a size and sha256 check, a safe extraction into
// a fresh folder, then the package's command run with /bin/sh -c in that
// folder under a timeout. Only a command that exits 0 changes the
// installed version, and the state that records it is written atomically,
// so a crash at any point leaves the agent able to start again and report
// the truth.
//
// The state folder holds everything the agent keeps:
//
//	id                    the device id, generated once (unless given)
//	agent.creds, agent.nk the broker credentials and the key alone; a
//	                      broken one is moved aside (see creds.go)
//	state.json            installed and previous version, failed versions,
//	                      the marker of an install in progress
//	downloads/<sha>.part  downloads, kept to resume; removed after 7 days
//	staging/              packages being installed; emptied at start
//	releases/<version>    the installed package and the previous one
package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/thinfleet/thinfleet/bundle"
	"github.com/thinfleet/thinfleet/wire"
)

// Options configure an Agent. Only Server and StateDir are required.
type Options struct {
	// Server is the NATS URL to connect to, or several separated by commas.
	Server string
	// StateDir is the folder the agent keeps its state in (see the package
	// documentation); it is created if missing.
	StateDir string
	// ID is the device id; empty means the one kept in StateDir/id, which
	// is generated at the first start.
	ID string
	// EnrollToken is the password the agent connects with; empty connects
	// without one.
	EnrollToken string
	// Heartbeat is the interval between heartbeats; default 5s.
	Heartbeat time.Duration
	// CommandTimeout bounds an install command; default 30m.
	CommandTimeout time.Duration
	// Limits bound what an update package may expand to; fields left zero
	// take bundle.DefaultLimits.
	Limits bundle.Limits
	// CA is a PEM file of the certificate authority that signed the
	// server's TLS certificates, for the broker and the downloads; empty
	// trusts the system's authorities.
	CA string
	// PublisherKey is the publisher's public key file (PEM, as thinfleet
	// keygen writes it). When set, the agent installs only what is signed
	// with it: an offer without a signature, or one whose signature does
	// not verify against the exact bytes downloaded, fails before anything
	// is extracted.
	PublisherKey string
	// AgentVersion is the agent binary's own version, sent with the
	// hardware report.
	AgentVersion string
	// Labels are the machine's labels (site=berlin), sent with the
	// hardware report; New refuses any outside wire.ValidateLabels.
	Labels map[string]string
	// Logger receives the agent's log; default slog.Default().
	Logger *slog.Logger
}

// Defaults for Options left zero.
const (
	DefaultHeartbeat      = 5 * time.Second
	DefaultCommandTimeout = 30 * time.Minute
)

// Agent is one running thinfleet client.
type Agent struct {
	opts  Options
	id    string
	log   *slog.Logger
	key   ed25519.PublicKey // the publisher's; nil installs unsigned releases too
	dirs  layout
	store *store
	// session queues the reports and sends heartbeats: the protocol part
	// of the agent, which thinfleet-sim runs too.
	session *Session
	http    *http.Client

	reportNow chan struct{} // asks the reporter for hardware and version now
	// authFailures counts the broker's refusals of the credentials since
	// the last connect; renewing is set while new ones are asked for.
	authFailures atomic.Int32
	renewing     atomic.Bool
	// renewals tracks the renewal goroutine (authRefused), started from
	// NATS callbacks; once renewalsDone is set, under renewalsMu, none
	// starts, so that Run can wait for the last one.
	renewals     sync.WaitGroup
	renewalsMu   sync.Mutex
	renewalsDone bool
	tokenWarned  atomic.Int64  // unix nanoseconds of the last warning of a refused enrollment token
	revoked      atomic.Bool   // the server answered that this device is revoked, and has not taken it since
	wake         chan struct{} // tells the installer an offer is pending
	refused      atomic.Int64  // offers refused as stale or replayed

	mu      sync.Mutex
	pending *wire.Offer // the latest offer not yet handled
	running string      // version being installed, "" when idle
}

// New checks opts, settles the device id and reads the state. It starts
// nothing; Run does.
func New(opts Options) (*Agent, error) {
	if opts.Server == "" {
		return nil, errors.New("agent: no server URL")
	}
	if opts.StateDir == "" {
		return nil, errors.New("agent: no state folder")
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Heartbeat < wire.MinHeartbeat || opts.Heartbeat > wire.MaxHeartbeat {
		return nil, fmt.Errorf("agent: heartbeat %s outside [%s, %s]", opts.Heartbeat, wire.MinHeartbeat, wire.MaxHeartbeat)
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = DefaultCommandTimeout
	}
	if err := wire.ValidateLabels(opts.Labels); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dir, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("agent: state folder: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: create state folder: %w", err)
	}
	opts.StateDir = dir
	var roots *x509.CertPool
	if opts.CA != "" {
		pem, err := os.ReadFile(opts.CA)
		if err != nil {
			return nil, fmt.Errorf("agent: CA: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("agent: CA %s: no PEM certificate in it", opts.CA)
		}
	}
	httpClient := newHTTPClient(roots)
	var key ed25519.PublicKey
	if opts.PublisherKey != "" {
		if key, err = bundle.LoadPublicKey(opts.PublisherKey); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	id, err := resolveID(opts.ID, dir)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	log := opts.Logger.With("device", id)
	st, err := openStore(filepath.Join(dir, "state.json"), log)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := &Agent{
		opts:      opts,
		id:        id,
		log:       log,
		key:       key,
		dirs:      newLayout(dir),
		store:     st,
		session:   &Session{id: id, log: log, out: newOutbox(log)},
		http:      httpClient,
		reportNow: make(chan struct{}, 1),
		wake:      make(chan struct{}, 1),
	}
	a.triggerReport() // once at start, besides every (re)connect
	return a, nil
}

// ID is the device id the agent reports under.
func (a *Agent) ID() string { return a.id }

// Run connects to the server and works until ctx ends: heartbeats,
// hardware and version reports, and installs of the offers it receives.
// Connection failures are retried forever, so Run returns only when ctx
// ends (nil), or at once with an error if the state folder or the server
// URL is unusable. All of its goroutines have ended when it returns. An
// install still running is stopped: a command cut short is reported as
// interrupted at the next start, a download resumes at the next offer.
// Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	// A renewal of the credentials runs beside the connection, on ctx:
	// at return, ctx is canceled and the renewal waited for.
	ctx, cancel := context.WithCancel(ctx)
	defer a.waitRenewals()
	defer cancel()
	if err := a.recoverState(); err != nil {
		return err
	}
	creds, err := a.credentials(ctx)
	if errors.Is(err, ctx.Err()) && ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	nc, err := connect(a.opts, a.id, creds, a.log, a.connected, a.authRefused(ctx, creds), a.reconnectDelay)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("agent: jetstream: %w", err)
	}
	sub, err := nc.Subscribe(wire.OfferSubject(a.id), a.onOffer)
	if err != nil {
		return fmt.Errorf("agent: subscribe to offers: %w", err)
	}
	a.log.Info("agent started", "server", a.opts.Server, "state", a.opts.StateDir, "version", a.store.get().Version,
		"signed_releases_only", a.key != nil)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { a.session.out.run(gctx, js, nc.IsConnected); return nil })
	g.Go(func() error { a.heartbeats(gctx, nc); return nil })
	g.Go(func() error { a.reporter(gctx); return nil })
	g.Go(func() error { a.installer(gctx); return nil })
	err = g.Wait()
	_ = sub.Unsubscribe()
	// A last try at what is still queued (a failed or installed status),
	// bounded so that shutdown never hangs on an unreachable server.
	if nc.IsConnected() {
		a.session.out.flush(js, shutdownFlush)
	}
	a.log.Info("agent stopped")
	return err
}

// shutdownFlush bounds the last publishes at shutdown.
const shutdownFlush = 3 * time.Second

// triggerReport asks the reporter for a hardware and version report; it
// never blocks, so NATS callbacks may call it.
func (a *Agent) triggerReport() {
	select {
	case a.reportNow <- struct{}{}:
	default:
	}
}

// heartbeats publishes a heartbeat every interval while connected. They
// go over core NATS: a heartbeat is worth something only while fresh.
func (a *Agent) heartbeats(ctx context.Context, nc *nats.Conn) {
	t := time.NewTicker(a.opts.Heartbeat)
	defer t.Stop()
	var seq int64
	for {
		if nc.IsConnected() {
			seq++
			if err := a.session.Heartbeat(nc, a.opts.Heartbeat, seq); err != nil {
				a.log.Debug("heartbeat not sent", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
