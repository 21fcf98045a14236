package main

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

// fleet is the simulated agents: each has its own credentials, its own
// broker connection and an agent.Session that queues its reports. What
// one goroutine can do for all of them (heartbeats on a schedule, taking
// offers) is done once, so that the simulator's own cost stays small
// beside the server's: per agent there are the connection's two
// goroutines, the session's delivery and, during a rollout, one download.
type fleet struct {
	opts    *options
	log     *slog.Logger // the agents' own logs: warnings only
	natsURL string
	token   string // enrollment token
	dir     string // credentials, one file an agent
	http    *http.Client
	agents  []*simAgent
	byID    map[string]*simAgent
	offers  chan *nats.Msg

	rollout  atomic.Bool // offers are installed (download, verify, report)
	wg       sync.WaitGroup
	badOffer atomic.Int64
}

// simAgent is one simulated device.
type simAgent struct {
	f     *fleet
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
	offered   map[string]time.Time // version → when its first offer arrived
	dl        map[string]download  // version → the download of it
	urls      map[string]string    // version → the link of its last offer
}

// live is a started agent's connection and session.
type live struct {
	sess *agent.Session
	nc   *nats.Conn
	stop context.CancelFunc // ends the session's delivery
}

// download is one agent's fetch of an offered zip.
type download struct {
	start, end time.Time
	err        string
}

const simAgentVersion = "thinfleet-sim"

func newFleet(o *options, natsURL, token, dir string, log *slog.Logger) *fleet {
	f := &fleet{
		opts: o, log: log, natsURL: natsURL, token: token, dir: dir,
		http:   newFleetHTTP(o.timeout),
		byID:   map[string]*simAgent{},
		offers: make(chan *nats.Msg, 4*o.agents+1024),
	}
	for i := range o.agents {
		id := fmt.Sprintf("%s-%05d", o.prefix, i)
		a := &simAgent{f: f, index: i, id: id, creds: filepath.Join(dir, id+".creds"),
			installed: baseVersion, offered: map[string]time.Time{}, dl: map[string]download{}, urls: map[string]string{}}
		f.agents = append(f.agents, a)
		f.byID[id] = a
	}
	return f
}

// newFleetHTTP is the agents' HTTP client: like the agent's, without
// compression, so that what is measured is the zip's bytes.
func newFleetHTTP(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableCompression = true
	t.MaxIdleConnsPerHost = 64
	t.ResponseHeaderTimeout = 60 * time.Second
	return &http.Client{Transport: t, Timeout: timeout}
}

// baseVersion is what every simulated agent has installed when it starts.
const baseVersion = "0.1.0"

// parallel runs do for each agent on workers goroutines, and stops
// handing out work when ctx ends.
func parallel(ctx context.Context, agents []*simAgent, workers int, do func(*simAgent)) {
	next := make(chan *simAgent)
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

// enroll gives every agent credentials, keeping them in the state folder:
// an agent enrolled by an earlier run keeps its file. It returns how many
// were enrolled now and how many have credentials.
func (f *fleet) enroll(ctx context.Context, progress func(string, ...any)) (fresh, have int, err error) {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return 0, 0, err
	}
	var todo []*simAgent
	for _, a := range f.agents {
		if st, err := os.Stat(a.creds); err == nil && st.Size() > 0 {
			continue
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, 0, err
		}
		todo = append(todo, a)
	}
	var done, failed atomic.Int64
	stopProgress := every(ctx, 2*time.Second, func() {
		progress("enrolling", "done", done.Load(), "of", len(todo), "failed", failed.Load())
	})
	defer stopProgress()
	ctx, cancel := context.WithTimeout(ctx, f.opts.timeout)
	defer cancel()
	var firstErr atomic.Value
	parallel(ctx, todo, 32, func(a *simAgent) {
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
func (f *fleet) enrollOne(ctx context.Context, a *simAgent) error {
	key, err := nkeys.CreateUser()
	if err != nil {
		return err
	}
	wait := 200 * time.Millisecond
	for {
		userJWT, err := agent.Enroll(ctx, agent.EnrollOptions{Server: f.natsURL, Token: f.token, ID: a.id, Hostname: a.id}, key)
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

// connect opens the connections of agents, a few at a time, and starts
// their sessions. It returns when every Dial has returned (each
// connection then keeps trying by itself) or ctx ends.
func (f *fleet) connect(ctx context.Context, agents []*simAgent) {
	parallel(ctx, agents, 64, func(a *simAgent) {
		if err := a.start(ctx); err != nil {
			f.log.Warn("agent not started", "device", a.id, "err", err)
		}
	})
}

// start dials the agent's connection, subscribes to its offers and
// starts its session, which reports hardware and version at every
// (re)connect. The first heartbeat goes at once, as the agent's does.
func (a *simAgent) start(ctx context.Context) error {
	sess, err := agent.NewSession(a.id, a.f.log)
	if err != nil {
		return err
	}
	a.closed.Store(false)
	a.silent.Store(false)
	nc, err := agent.Dial(agent.DialOptions{
		Server: a.f.natsURL, ID: a.id, Credentials: a.creds, Log: a.f.log,
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

// connected counts the agents whose connection is up now.
func (f *fleet) connected() int {
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
func (a *simAgent) report(sess *agent.Session) {
	a.mu.Lock()
	v := a.installed
	a.mu.Unlock()
	sess.ReportHardware(simHardware(a.id, a.index), simAgentVersion, a.f.opts.agentLabels(a.index))
	sess.ReportVersion(v, "")
}

func simHardware(id string, i int) wire.Hardware {
	return wire.Hardware{
		Hostname: id, OS: "linux", Platform: "debian", PlatformVersion: "12", KernelVersion: "6.1.0-sim",
		Arch: "amd64", CPUModel: "Simulated CPU @ 2.0GHz", CPUCores: 2 + i%4, CPUThreads: 4 + i%8,
		MemoryTotal: uint64(2+i%6) << 30,
	}
}

// heartbeat sends the agent's next heartbeat unless it is silent or
// closed.
func (a *simAgent) heartbeat() {
	l := a.live.Load()
	if a.silent.Load() || a.closed.Load() || l == nil || !l.nc.IsConnected() {
		return
	}
	if err := l.sess.Heartbeat(l.nc, a.f.opts.heartbeat, a.seq.Add(1)); err != nil {
		a.f.log.Debug("heartbeat not sent", "device", a.id, "err", err)
	}
}

// close closes the agent's connection, as an agent that stops does.
func (a *simAgent) close() {
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
func (f *fleet) heartbeats(ctx context.Context) {
	const tick = 10 * time.Millisecond
	slots := max(1, int(f.opts.heartbeat/tick))
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

// takeOffers records every offer's arrival and, during a rollout,
// installs it, until ctx ends.
func (f *fleet) takeOffers(ctx context.Context) {
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

// offer records o's arrival; during a rollout it installs o if it is
// newer than what the agent has and not being installed (the agent's own
// rule: the server repeats offers freely).
func (a *simAgent) offer(ctx context.Context, o wire.Offer, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, seen := a.offered[o.Version]; !seen {
		a.offered[o.Version] = at
	}
	a.urls[o.Version] = o.URL
	if !a.f.rollout.Load() || a.running != "" || !wire.Newer(o.Version, a.installed) {
		return
	}
	l := a.live.Load()
	if l == nil {
		return
	}
	a.running = o.Version
	a.f.wg.Add(1)
	go func() {
		defer a.f.wg.Done()
		a.install(ctx, l.sess, o)
	}()
}

// install downloads the offered zip over real HTTP, checks its size and
// sha256, and reports each step and the new version as the agent does.
// The zip is hashed as it streams, not kept: extracting and running a
// command are the agent's tests' business, not the fleet's load.
func (a *simAgent) install(ctx context.Context, sess *agent.Session, o wire.Offer) {
	sess.Status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateDownloading, BytesTotal: o.Size})
	d := download{start: time.Now()}
	err := fetchVerified(ctx, a.f.http, o.URL, o.Size, o.SHA256)
	d.end = time.Now()
	a.mu.Lock()
	prev := a.installed
	if err != nil {
		d.err = err.Error()
	} else {
		a.installed = o.Version
	}
	a.dl[o.Version] = d
	a.running = ""
	a.mu.Unlock()
	if err != nil {
		sess.Status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateFailed, Detail: err.Error()})
		return
	}
	sess.Status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateVerifying, BytesTotal: o.Size})
	sess.Status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateInstalling})
	sess.Status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateInstalled})
	sess.ReportVersion(o.Version, prev)
}

// fetchVerified GETs url and checks that it is size bytes with the given
// sha256.
func fetchVerified(ctx context.Context, c *http.Client, url string, size int64, sum string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download: %s", resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, size+1))
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if n != size {
		return fmt.Errorf("download: %d bytes, want %d", n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); sum != "" && got != sum {
		return fmt.Errorf("download: sha256 %s, want %s", got, sum)
	}
	return nil
}

// offeredAt returns when the agent's first offer of version arrived.
func (a *simAgent) offeredAt(version string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.offered[version]
	return t, ok
}

func (a *simAgent) downloadOf(version string) (download, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.dl[version]
	return d, ok
}

// closeAll closes every connection and waits for the sessions and
// downloads to end.
func (f *fleet) closeAll() {
	for _, a := range f.agents {
		a.close()
	}
	f.wg.Wait()
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
