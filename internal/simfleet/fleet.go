// Package simfleet is a fleet of simulated agents in one process. Each
// agent has its own credentials, its own broker connection and an
// agent.Session, and speaks the agent's own protocol code (agent.Enroll,
// agent.Dial, agent.Session): enrollment, hardware, label and version
// reports, heartbeats, offers and install statuses. While installing is
// on, an agent takes an offer by the agent's rules, downloads the zip
// over real HTTP, checks its size and sha256, and reports each step and
// the new version; Behaviour makes some agents differ (labels, platform,
// an install that takes time, failures), deterministically by index.
//
// The simulator (cmd/thinfleet-sim) measures a server with it, and the
// fleet tests watch rollouts with it: every offer an agent receives is
// recorded, and the fleet counts the installs in progress at once.
package simfleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/agent"
	"github.com/thinfleet/thinfleet/wire"
)

// Options configure a fleet.
type Options struct {
	// Agents is how many agents the fleet has; their ids are
	// Prefix-00000, Prefix-00001, ...
	Agents int
	Prefix string // "sim" when empty
	// NATSURL is the server's broker; EnrollToken its enrollment token.
	NATSURL     string
	EnrollToken string
	// Dir keeps the agents' credentials, one file an agent, so that a
	// fleet enrolls once.
	Dir string
	// Heartbeat is the agents' heartbeat interval (5 s).
	Heartbeat time.Duration
	// Timeout bounds enrolling and each download (5 minutes).
	Timeout time.Duration
	// Log is the agents' log (warnings matter; slog.Default() when nil).
	Log       *slog.Logger
	Behaviour Behaviour
}

// Fleet is the simulated agents. What one goroutine can do for all of
// them (heartbeats on a schedule, taking offers) is done once, so that
// the simulator's own cost stays small beside the server's: per agent
// there are the connection's two goroutines, the session's delivery
// and, during an install, one download.
type Fleet struct {
	opts   Options
	log    *slog.Logger
	http   *http.Client
	agents []*Agent
	byID   map[string]*Agent
	offers chan *nats.Msg

	installing atomic.Bool // offers are installed (download, verify, report)
	wg         sync.WaitGroup
	badOffer   atomic.Int64
	// inProgress counts the installs under way now, mostInProgress the
	// most there were at once.
	inProgress, mostInProgress atomic.Int64
}

// Agent is one simulated device.
type Agent struct {
	f     *Fleet
	index int
	id    string
	creds string
	live  atomic.Pointer[live] // nil until started
	seq   atomic.Int64
	// silent stops heartbeats while the connection stays open; closed is
	// set once the connection is closed on purpose.
	silent, closed atomic.Bool

	mu        sync.Mutex
	installed string
	running   string
	offers    []Offer              // every offer received, oldest first
	offered   map[string]time.Time // version → when its first offer arrived
	dl        map[string]Download  // version → the last download of it
	urls      map[string]string    // version → the link of its last offer
	failed    map[string]string    // version → why its last install failed
	attempts  map[string]int       // version → installs started
}

// Offer is an offer an agent received, as it arrived.
type Offer struct {
	wire.Offer
	Arrived time.Time
}

// live is a started agent's connection and session.
type live struct {
	sess *agent.Session
	nc   *nats.Conn
	stop context.CancelFunc // ends the session's delivery
}

// Download is one agent's fetch of an offered zip.
type Download struct {
	Start, End time.Time
	Err        string
}

// AgentVersion is the agent version the simulated agents report.
const AgentVersion = "thinfleet-sim"

// BaseVersion is what every simulated agent has installed when it
// starts.
const BaseVersion = "0.1.0"

// New makes the fleet's agents; none is enrolled or connected yet.
func New(o Options) *Fleet {
	if o.Prefix == "" {
		o.Prefix = "sim"
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	f := &Fleet{
		opts: o, log: log,
		http:   NewHTTPClient(o.Timeout),
		byID:   map[string]*Agent{},
		offers: make(chan *nats.Msg, 4*o.Agents+1024),
	}
	for i := range o.Agents {
		id := fmt.Sprintf("%s-%05d", o.Prefix, i)
		a := &Agent{f: f, index: i, id: id, creds: filepath.Join(o.Dir, id+".creds"),
			installed: BaseVersion, offered: map[string]time.Time{}, dl: map[string]Download{},
			urls: map[string]string{}, failed: map[string]string{}, attempts: map[string]int{}}
		f.agents = append(f.agents, a)
		f.byID[id] = a
	}
	return f
}

// NewHTTPClient is the agents' HTTP client: like the agent's, without
// compression, so that what is measured is the zip's bytes.
func NewHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableCompression = true
	t.MaxIdleConnsPerHost = 64
	t.ResponseHeaderTimeout = 60 * time.Second
	return &http.Client{Transport: t, Timeout: timeout}
}

// Agents are the fleet's agents, by index.
func (f *Fleet) Agents() []*Agent { return f.agents }

// Agent returns the agent with id, nil if the fleet has none.
func (f *Fleet) Agent(id string) *Agent { return f.byID[id] }

// Behaviour is what the fleet's agents report and how their installs go.
func (f *Fleet) Behaviour() Behaviour { return f.opts.Behaviour }

// Install turns installing offers on or off: while off, offers are only
// recorded.
func (f *Fleet) Install(on bool) { f.installing.Store(on) }

// BadOffers counts the offers that could not be read.
func (f *Fleet) BadOffers() int64 { return f.badOffer.Load() }

// InProgress is how many installs are under way now, and the most there
// were at once since the fleet started.
func (f *Fleet) InProgress() (now, most int) {
	return int(f.inProgress.Load()), int(f.mostInProgress.Load())
}

// parallel runs do for each agent on workers goroutines, and stops
// handing out work when ctx ends.
func parallel(ctx context.Context, agents []*Agent, workers int, do func(*Agent)) {
	next := make(chan *Agent)
	var wg sync.WaitGroup
	for range min(workers, len(agents)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range next {
				do(a)
			}
		}()
	}
	for _, a := range agents {
		select {
		case next <- a:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
}

// Enroll gives every agent credentials, keeping them in Dir: an agent
// enrolled by an earlier run keeps its file. It returns how many were
// enrolled now and how many have credentials. progress, when not nil, is
// told how it goes every 2 s.
func (f *Fleet) Enroll(ctx context.Context, progress func(string, ...any)) (fresh, have int, err error) {
	if err := os.MkdirAll(f.opts.Dir, 0o700); err != nil {
		return 0, 0, err
	}
	var todo []*Agent
	for _, a := range f.agents {
		if st, err := os.Stat(a.creds); err == nil && st.Size() > 0 {
			continue
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, 0, err
		}
		todo = append(todo, a)
	}
	var done, failed atomic.Int64
	if progress != nil {
		stopProgress := every(ctx, 2*time.Second, func() {
			progress("enrolling", "done", done.Load(), "of", len(todo), "failed", failed.Load())
		})
		defer stopProgress()
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	var firstErr atomic.Value
	parallel(ctx, todo, 32, func(a *Agent) {
		if err := f.enrollOne(ctx, a); err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", a.id, err))
			return
		}
		done.Add(1)
	})
	for _, a := range f.agents {
		if _, err := os.Stat(a.creds); err == nil {
			have++
		}
	}
	if e, ok := firstErr.Load().(string); ok && have < len(f.agents) {
		return int(done.Load()), have, fmt.Errorf("%d agents not enrolled, first: %s", len(f.agents)-have, e)
	}
	return int(done.Load()), have, nil
}

// enrollOne asks until the server issues credentials or ctx ends: the
// server refuses new devices beyond its enrollment rate, and they ask
// again, as agents do.
func (f *Fleet) enrollOne(ctx context.Context, a *Agent) error {
	key, err := nkeys.CreateUser()
	if err != nil {
		return err
	}
	wait := 200 * time.Millisecond
	for {
		userJWT, err := agent.Enroll(ctx, agent.EnrollOptions{Server: f.opts.NATSURL, Token: f.opts.EnrollToken, ID: a.id, Hostname: a.id}, key)
		if err == nil {
			seed, _ := key.Seed()
			creds, err := jwt.FormatUserConfig(userJWT, seed)
			if err != nil {
				return err
			}
			return writeAtomic(a.creds, creds)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last answer: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Run sends the agents' heartbeats and takes their offers until ctx
// ends; it returns then.
func (f *Fleet) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); f.heartbeats(ctx) }()
	go func() { defer wg.Done(); f.takeOffers(ctx) }()
	wg.Wait()
}

// Connect opens the connections of agents (every agent when none is
// given), a few at a time, and starts their sessions. It returns when
// every Dial has returned (each connection then keeps trying by itself)
// or ctx ends. The sessions' delivery and the installs end with ctx.
func (f *Fleet) Connect(ctx context.Context, agents ...*Agent) {
	if len(agents) == 0 {
		agents = f.agents
	}
	parallel(ctx, agents, 64, func(a *Agent) {
		if err := a.start(ctx); err != nil {
			f.log.Warn("agent not started", "device", a.id, "err", err)
		}
	})
}

// start dials the agent's connection, subscribes to its offers and
// starts its session, which reports hardware and version at every
// (re)connect. The first heartbeat goes at once, as the agent's does.
func (a *Agent) start(ctx context.Context) error {
	sess, err := agent.NewSession(a.id, a.f.log)
	if err != nil {
		return err
	}
	a.closed.Store(false)
	a.silent.Store(false)
	nc, err := agent.Dial(agent.DialOptions{
		Server: a.f.opts.NATSURL, ID: a.id, Credentials: a.creds, Log: a.f.log,
		OnConnect: func() { a.report(sess) },
	})
	if err != nil {
		return err
	}
	if _, err := nc.ChanSubscribe(wire.OfferSubject(a.id), a.f.offers); err != nil {
		nc.Close()
		return fmt.Errorf("subscribe to offers: %w", err)
	}
	dctx, cancel := context.WithCancel(ctx)
	a.live.Store(&live{sess: sess, nc: nc, stop: cancel})
	a.f.wg.Add(1)
	go func() {
		defer a.f.wg.Done()
		if err := sess.Deliver(dctx, nc); err != nil {
			a.f.log.Warn("reports not delivered", "device", a.id, "err", err)
		}
	}()
	a.heartbeat()
	return nil
}

// Connected counts the agents whose connection is up now.
func (f *Fleet) Connected() int {
	n := 0
	for _, a := range f.agents {
		if l := a.live.Load(); l != nil && l.nc.IsConnected() {
			n++
		}
	}
	return n
}

// report queues the hardware and version reports, as the agent does at
// every (re)connect.
func (a *Agent) report(sess *agent.Session) {
	a.mu.Lock()
	v := a.installed
	a.mu.Unlock()
	sess.ReportHardware(a.Hardware(), AgentVersion, a.Labels())
	sess.ReportVersion(v, "")
}

// Hardware is what the agent reports of its machine: its platform is
// Behaviour's for its index.
func (a *Agent) Hardware() wire.Hardware {
	i := a.index
	os, arch := a.f.opts.Behaviour.PlatformOf(i)
	return wire.Hardware{
		Hostname: a.id, OS: os, Platform: "debian", PlatformVersion: "12", KernelVersion: "6.1.0-sim",
		Arch: arch, CPUModel: "Simulated CPU @ 2.0GHz", CPUCores: 2 + i%4, CPUThreads: 4 + i%8,
		MemoryTotal: uint64(2+i%6) << 30,
	}
}

// Labels are the labels the agent reports (Behaviour's for its index).
func (a *Agent) Labels() map[string]string { return a.f.opts.Behaviour.LabelsOf(a.index) }

// heartbeat sends the agent's next heartbeat unless it is silent or
// closed.
func (a *Agent) heartbeat() {
	l := a.live.Load()
	if a.silent.Load() || a.closed.Load() || l == nil || !l.nc.IsConnected() {
		return
	}
	if err := l.sess.Heartbeat(l.nc, a.f.opts.Heartbeat, a.seq.Add(1)); err != nil {
		a.f.log.Debug("heartbeat not sent", "device", a.id, "err", err)
	}
}

// Silence stops the agent's heartbeats, its connection left open, or
// starts them again (the first at once).
func (a *Agent) Silence(on bool) {
	a.silent.Store(on)
	if !on {
		a.heartbeat()
	}
}

// Close closes the agent's connection, as an agent that stops does.
func (a *Agent) Close() {
	if a.closed.Swap(true) {
		return
	}
	if l := a.live.Load(); l != nil {
		l.stop()
		l.nc.Close()
	}
}

// heartbeats sends every agent's heartbeat once per interval, spread
// evenly over it, from one goroutine, until ctx ends.
func (f *Fleet) heartbeats(ctx context.Context) {
	const tick = 10 * time.Millisecond
	slots := max(1, int(f.opts.Heartbeat/tick))
	t := time.NewTicker(tick)
	defer t.Stop()
	for slot := 0; ; slot = (slot + 1) % slots {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i := slot; i < len(f.agents); i += slots {
			f.agents[i].heartbeat()
		}
	}
}

// takeOffers records every offer's arrival and, while installing is on,
// installs it, until ctx ends.
func (f *Fleet) takeOffers(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-f.offers:
			now := time.Now()
			_, id, err := wire.ParseSubject(m.Subject)
			a := f.byID[id]
			o, derr := wire.Decode[wire.Offer](m.Data)
			if err != nil || a == nil || derr != nil {
				f.badOffer.Add(1)
				f.log.Warn("offer dropped", "subject", m.Subject, "err", errors.Join(err, derr))
				continue
			}
			a.offer(ctx, o, now)
		}
	}
}

// offer records o's arrival; while installing is on it installs o unless
// the agent's own rules refuse it (agent/offers.go: the server repeats
// offers freely): it is what the agent runs, older without asking for a
// rollback, a version whose install failed before without asking for a
// retry, or an install is under way.
func (a *Agent) offer(ctx context.Context, o wire.Offer, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.offers = append(a.offers, Offer{Offer: o, Arrived: at})
	if _, seen := a.offered[o.Version]; !seen {
		a.offered[o.Version] = at
	}
	a.urls[o.Version] = o.URL
	_, failedBefore := a.failed[o.Version]
	switch {
	case !a.f.installing.Load(), a.running != "":
		return
	case sameVersion(o.Version, a.installed):
		return
	case !o.Rollback && !wire.Newer(o.Version, a.installed):
		return
	case failedBefore && !o.Retry:
		return
	}
	l := a.live.Load()
	if l == nil {
		return
	}
	a.running = o.Version
	a.attempts[o.Version]++
	attempt := a.attempts[o.Version]
	now := a.f.inProgress.Add(1)
	for {
		most := a.f.mostInProgress.Load()
		if now <= most || a.f.mostInProgress.CompareAndSwap(most, now) {
			break
		}
	}
	a.f.wg.Add(1)
	go func() {
		defer a.f.wg.Done()
		a.install(ctx, l.sess, o, attempt)
	}()
}

// install downloads the offered zip over real HTTP, checks its size and
// sha256, takes Behaviour's install time, fails where Behaviour says so,
// and reports each step and the new version as the agent does. The zip
// is hashed as it streams, not kept: extracting and running a command
// are the agent's tests' business, not the fleet's. The install stops
// counting as in progress before its last status is sent: the server
// never sees an install end that the fleet still counts.
func (a *Agent) install(ctx context.Context, sess *agent.Session, o wire.Offer, attempt int) {
	sess.Status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateDownloading, BytesTotal: o.Size})
	d := Download{Start: time.Now()}
	err := fetchVerified(ctx, a.f.http, o.URL, o.Size, o.SHA256)
	d.End = time.Now()
	if err != nil {
		d.Err = err.Error()
	} else {
		sess.Status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateVerifying, BytesTotal: o.Size})
		sess.Status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateInstalling})
		if t := a.f.opts.Behaviour.InstallTime; t > 0 {
			select {
			case <-time.After(t):
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err == nil && a.f.opts.Behaviour.Fails(o.Version, a.index, attempt) {
			err = fmt.Errorf("simulated failure of %s on %s, try %d", o.Version, a.id, attempt)
		}
	}
	a.mu.Lock()
	prev := a.installed
	if err != nil {
		a.failed[o.Version] = err.Error()
	} else {
		a.installed = o.Version
		delete(a.failed, o.Version)
	}
	a.dl[o.Version] = d
	a.running = ""
	a.mu.Unlock()
	a.f.inProgress.Add(-1)
	if err != nil {
		sess.Status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateFailed, Detail: err.Error()})
		return
	}
	sess.Status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateInstalled})
	sess.ReportVersion(o.Version, prev)
}

// fetchVerified GETs url and checks that it is size bytes with the given
// sha256.
func fetchVerified(ctx context.Context, c *http.Client, url string, size int64, sum string) error {
	_, err := Fetch(ctx, c, url, size, sum)
	return err
}

// Fetch GETs url and checks that it is size bytes with the given sha256
// (sum "" checks the size only); it returns the bytes read.
func Fetch(ctx context.Context, c *http.Client, url string, size int64, sum string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("download: %s", resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, size+1))
	if err != nil {
		return n, fmt.Errorf("download: %w", err)
	}
	if n != size {
		return n, fmt.Errorf("download: %d bytes, want %d", n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); sum != "" && got != sum {
		return n, fmt.Errorf("download: sha256 %s, want %s", got, sum)
	}
	return n, nil
}

// ID is the agent's device id.
func (a *Agent) ID() string { return a.id }

// Index is the agent's place in the fleet, from 0.
func (a *Agent) Index() int { return a.index }

// Installed is the version the agent runs.
func (a *Agent) Installed() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.installed
}

// Offers are the offers the agent received, oldest first.
func (a *Agent) Offers() []Offer {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Offer(nil), a.offers...)
}

// Attempts is how many installs of version the agent started.
func (a *Agent) Attempts(version string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.attempts[version]
}

// OfferedAt returns when the agent's first offer of version arrived.
func (a *Agent) OfferedAt(version string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.offered[version]
	return t, ok
}

// DownloadOf returns the agent's last download of version.
func (a *Agent) DownloadOf(version string) (Download, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.dl[version]
	return d, ok
}

// OfferURL is the link of the agent's last offer of version.
func (a *Agent) OfferURL(version string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.urls[version]
}

// Close closes every connection and waits for the sessions and installs
// to end.
func (f *Fleet) Close() {
	for _, a := range f.agents {
		a.Close()
	}
	f.wg.Wait()
}

func sameVersion(a, b string) bool {
	c, err := wire.CompareVersions(a, b)
	return err == nil && c == 0
}

// every runs fn every d until the returned stop is called or ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() { cancel(); <-done }
}
