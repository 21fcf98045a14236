package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/thinfleet/thinfleet/internal/simfleet"
)

// results are the figures of one run, printed as JSON. Durations are
// seconds, memory MiB, CPU a share of one core (1.0 = a full core).
type results struct {
	Agents        int        `json:"agents"`
	Started       time.Time  `json:"started"`
	Seconds       float64    `json:"seconds"`
	Scenarios     string     `json:"scenarios"`
	ServerStarted bool       `json:"server_started"`
	LoadStart     string     `json:"loadavg_start"`
	LoadEnd       string     `json:"loadavg_end"`
	Server        serverFigs `json:"server"`
	Enroll        struct {
		Fresh   int     `json:"enrolled_now"`
		Have    int     `json:"enrolled"`
		Seconds float64 `json:"seconds"`
	} `json:"enroll"`
	Connect struct {
		Connected int `json:"connected"`
		// AllAlive is from the first connection to the API showing every
		// agent alive.
		AllAlive float64 `json:"all_alive_s"`
		Alive    int     `json:"alive"`
	} `json:"connect"`
	Hold       *holdFigs    `json:"hold,omitempty"`
	API        *apiFigs     `json:"api,omitempty"`
	Fanout     *offerFigs   `json:"fanout,omitempty"`
	Rollout    *rolloutFigs `json:"rollout,omitempty"`
	Silent     *goneFigs    `json:"silent,omitempty"`
	Disconnect *goneFigs    `json:"disconnect,omitempty"`
	Problems   []string     `json:"problems,omitempty"`
	BadOffers  int64        `json:"bad_offers"`
}

type serverFigs struct {
	RSSIdleMiB float64 `json:"rss_idle_mib,omitempty"`
	RSSMiB     float64 `json:"rss_mib,omitempty"`
	// CPUHeartbeating is the server's CPU during hold: every agent
	// connected and heartbeating, nothing else happening.
	CPUHeartbeating float64 `json:"cpu_heartbeating,omitempty"`
}

type holdFigs struct {
	Seconds float64 `json:"seconds"`
	// AliveMin is the fewest agents the API showed alive in any sample
	// during the hold; AliveEnd at its end.
	AliveMin int     `json:"alive_min"`
	AliveEnd int     `json:"alive_end"`
	Samples  int     `json:"samples"`
	CPU      float64 `json:"server_cpu"`
	RSSMiB   float64 `json:"server_rss_mib"`
	// SimCPU and SimRSSMiB are the simulator's own, so that a reader can
	// tell whether it, sharing the machine, was the limit.
	SimCPU    float64 `json:"sim_cpu"`
	SimRSSMiB float64 `json:"sim_rss_mib"`
}

type apiFigs struct {
	Devices latency `json:"devices"`
	Clients latency `json:"clients"`
}

// offerFigs measure from the catalog accepting a zip (its release's
// "added" time) to each agent holding its offer.
type offerFigs struct {
	Version string  `json:"version"`
	Offered int     `json:"offered"`
	P50     float64 `json:"p50_s"`
	P99     float64 `json:"p99_s"`
	Max     float64 `json:"max_s"`
	// Accept is from the zip landing in the updates folder to the
	// catalog's acceptance.
	Accept float64 `json:"accept_s"`
}

type rolloutFigs struct {
	offerFigs
	SizeBytes int64  `json:"size_bytes"`
	Verified  int    `json:"verified"`
	Failed    int    `json:"failed"`
	FirstErr  string `json:"first_error,omitempty"`
	// Installed counts the agents the API shows on the new version;
	// AllInstalled is from the catalog's acceptance until it shows all.
	Installed    int     `json:"installed_in_api"`
	AllInstalled float64 `json:"all_installed_s"`
	// Downloads is from the first download's start to the last one's
	// end, as the offers came.
	Downloads float64 `json:"downloads_s"`
	// Burst is every agent fetching its offered link at once from the
	// server, and Nginx the same number of clients fetching the same
	// file from nginx, in the same run; Ratio is Burst/Nginx.
	Burst *burstFigs `json:"burst,omitempty"`
	Nginx *burstFigs `json:"nginx,omitempty"`
	Ratio float64    `json:"ratio,omitempty"`
	// CPURatio compares the CPU each spent per MiB served.
	CPURatio  float64 `json:"cpu_per_mib_ratio,omitempty"`
	NginxNote string  `json:"nginx_note,omitempty"`
}

type burstFigs struct {
	Clients   int     `json:"clients"`
	Seconds   float64 `json:"seconds"`
	Verified  int     `json:"verified"`
	CPUSecs   float64 `json:"cpu_s"`
	CPUPerMiB float64 `json:"cpu_ms_per_mib"`
	FirstErr  string  `json:"first_error,omitempty"`
}

// goneFigs measure from a group going quiet to the API showing every one
// of it notAlive.
type goneFigs struct {
	Group       int     `json:"group"`
	AllNotAlive float64 `json:"all_not_alive_s"`
	StillAlive  int     `json:"still_alive"`
	Polls       int     `json:"polls"`
}

// simulation is one run of the scenarios.
type simulation struct {
	o        *options
	res      *results
	srv      *server
	api      *api
	f        *simfleet.Fleet
	updates  string
	progress func(string, ...any)
	stamp    int64
}

func (s *simulation) run(ctx context.Context, scen map[string]bool) error {
	s.stamp = time.Now().Unix()
	start := time.Now()
	fresh, have, err := s.f.Enroll(ctx, s.progress)
	s.res.Enroll.Fresh, s.res.Enroll.Have, s.res.Enroll.Seconds = fresh, have, round3(time.Since(start).Seconds())
	s.progress("enrolled", "now", fresh, "in_all", have, "seconds", s.res.Enroll.Seconds)
	if err != nil {
		return err
	}
	fctx, stop := context.WithCancel(ctx)
	defer func() { stop(); s.f.Close() }()
	go s.f.Run(fctx)

	if err := s.connect(fctx); err != nil {
		// The scenarios still run: what the server costs and does with a
		// fleet it shows partly dead is part of the picture.
		s.res.Problems = append(s.res.Problems, "connect: "+err.Error())
	}
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"hold", s.hold}, {"api", s.apiLoad}, {"fanout", s.fanout}, {"rollout", s.rollout},
		{"silent", s.silent}, {"disconnect", s.disconnect},
	}
	for _, st := range steps {
		if !scen[st.name] {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.progress("scenario " + st.name)
		if err := st.run(fctx); err != nil {
			s.res.Problems = append(s.res.Problems, st.name+": "+err.Error())
		}
	}
	s.res.BadOffers = s.f.BadOffers()
	return nil
}

// waitFor polls check every poll until it reports done, the timeout
// passes (an error saying what was last seen) or ctx ends.
func (s *simulation) waitFor(ctx context.Context, what string, poll time.Duration, check func() (done bool, seen string)) error {
	deadline := time.Now().Add(s.o.timeout)
	lastSaid := time.Now()
	for {
		done, seen := check()
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s (%s)", what, s.o.timeout, seen)
		}
		if time.Since(lastSaid) > 2*time.Second {
			s.progress("waiting: "+what, "seen", seen)
			lastSaid = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// connect opens every agent's connection and waits until the API shows
// them all alive.
func (s *simulation) connect(ctx context.Context) error {
	start := time.Now()
	s.f.Connect(ctx)
	s.progress("connections open", "connected", s.f.Connected(), "seconds", round3(time.Since(start).Seconds()))
	err := s.waitFor(ctx, "every agent alive in the API", 250*time.Millisecond, func() (bool, string) {
		n, err := s.api.count(ctx, s.o.prefix, url.Values{"alive": {"true"}})
		if err != nil {
			return false, err.Error()
		}
		s.res.Connect.Alive = n
		return n == len(s.f.Agents()), fmt.Sprintf("%d of %d alive", n, len(s.f.Agents()))
	})
	s.res.Connect.AllAlive = round3(time.Since(start).Seconds())
	// Counted once the wait is over: a first attempt that failed under
	// load is retried in the background.
	s.res.Connect.Connected = s.f.Connected()
	s.progress("alive in the API", "alive", s.res.Connect.Alive, "seconds", s.res.Connect.AllAlive)
	return err
}

// hold keeps every agent connected and heartbeating for the hold time,
// samples the API's alive count and measures the server.
func (s *simulation) hold(ctx context.Context) error {
	h := &holdFigs{AliveMin: len(s.f.Agents())}
	s.res.Hold = h
	var before procStat
	if s.srv != nil {
		before, _ = readProc(s.srv.pid())
	}
	self0, _ := readProc(os.Getpid())
	start := time.Now()
	var firstErr error
	for time.Since(start) < s.o.hold && ctx.Err() == nil {
		n, err := s.api.aliveOf(ctx, s.f.Agents())
		if err != nil {
			firstErr = err
		} else {
			h.Samples++
			h.AliveMin = min(h.AliveMin, n)
			h.AliveEnd = n
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(5*time.Second, s.o.hold/3+time.Millisecond)):
		}
	}
	h.Seconds = round3(time.Since(start).Seconds())
	if self1, err := readProc(os.Getpid()); err == nil {
		h.SimCPU, h.SimRSSMiB = round3(cpuShare(self0, self1)), mib(self1.rss)
	}
	if s.srv != nil {
		after, err := readProc(s.srv.pid())
		if err == nil {
			h.CPU = round3(cpuShare(before, after))
			h.RSSMiB = mib(after.rss)
			s.res.Server.CPUHeartbeating, s.res.Server.RSSMiB = h.CPU, h.RSSMiB
		}
	}
	s.progress("held", "alive_min", h.AliveMin, "alive_end", h.AliveEnd, "server_cpu", h.CPU, "server_rss_mib", h.RSSMiB,
		"sim_cpu", h.SimCPU, "sim_rss_mib", h.SimRSSMiB)
	if h.AliveMin < len(s.f.Agents()) {
		return fmt.Errorf("the API showed only %d of %d heartbeating agents alive at one sample", h.AliveMin, len(s.f.Agents()))
	}
	return firstErr
}

// apiLoad measures the devices API and the clients page under
// concurrent requests.
func (s *simulation) apiLoad(ctx context.Context) error {
	a := &apiFigs{}
	s.res.API = a
	a.Devices = load(ctx, s.o.apiRequests, s.o.apiConcurrency, func(ctx context.Context) (int64, error) {
		b, err := s.api.get(ctx, "/api/v1/devices")
		return int64(len(b)), err
	})
	s.progress("GET /api/v1/devices", "p50", a.Devices.P50, "p99", a.Devices.P99, "errors", a.Devices.Errors)
	c, err := s.api.session(ctx)
	if err != nil {
		return fmt.Errorf("sign in for /clients: %w", err)
	}
	a.Clients = load(ctx, s.o.apiRequests, s.o.apiConcurrency, func(ctx context.Context) (int64, error) {
		return getPage(ctx, c, s.api.base+"/clients")
	})
	s.progress("GET /clients", "p50", a.Clients.P50, "p99", a.Clients.P99, "errors", a.Clients.Errors)
	if a.Devices.Errors+a.Clients.Errors > 0 {
		return fmt.Errorf("%d of %d devices requests and %d of %d /clients failed (%s%s)",
			a.Devices.Errors, a.Devices.Requests, a.Clients.Errors, a.Clients.Requests, a.Devices.Error, a.Clients.Error)
	}
	return nil
}
