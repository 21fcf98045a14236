package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thinfleet/thinfleet/fdlimit"
	"github.com/thinfleet/thinfleet/internal/simfleet"
	"github.com/thinfleet/thinfleet/wire"
)

const usage = `thinfleet-sim runs a simulated fleet against a thinfleet server: N agents
in one process, each with its own broker connection and credentials,
speaking the agent's own protocol code (enrollment, hardware and version
reports, 5 s heartbeats, offers, install statuses) and downloading the
offered zips over real HTTP, checked by sha256. It shows its progress on
stderr and ends with one JSON object of figures on stdout.

Usage:
  thinfleet-sim [flags]                    start bin/thinfleet (or --thinfleet) itself
  thinfleet-sim --nats-url URL --api URL --updates DIR [flags]
                                           use a running server
  thinfleet-sim table [--plot FILE.png] RESULT.json...
                                           the BENCHMARKS.md table of results

The agents' credentials are kept in --state, so a fleet enrolls once; the
server it starts keeps its data there too.

Scenarios (--scenarios, in this order):
  hold        connect every agent, time until the API shows all alive, hold
              (--hold) measuring the server's CPU and RSS
  api         GET /api/v1/devices and /clients, --api-requests each, 20 at once
  fanout      publish a small zip: from the catalog accepting it to each agent
              holding its offer
  rollout     publish a --zip-size zip: every agent downloads and verifies it
              and reports it installed; then the same downloads all at once
              from the server and from nginx (sendfile on) for comparison
  silent      --group agents stop heartbeating, connections open: time until
              the API shows them all notAlive
  disconnect  --group agents close their connections at once: the same

Flags:
`

// options are the simulator's flags.
type options struct {
	agents         int
	state          string
	thinfleet      string
	natsURL        string
	apiURL         string
	updates        string
	adminToken     string
	enrollToken    string
	prefix         string
	scenarios      string
	heartbeat      time.Duration
	hold           time.Duration
	timeout        time.Duration
	zipSize        int64
	group          int
	apiRequests    int
	apiConcurrency int
	nginx          string
	serverArgs     string
	// labels are every agent's; every canaryEvery-th agent (index 0,
	// N, 2N, ...) adds ring=canary, the rest ring=main.
	labels      string
	canaryEvery int
	// platforms, installTime and failures are the rest of the agents'
	// simfleet.Behaviour.
	platforms   string
	installTime time.Duration
	failures    []simfleet.Failure
}

func (o *options) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.IntVar(&o.agents, "agents", 100, "simulated agents")
	fs.StringVar(&o.state, "state", "./sim-state", "folder of the agents' credentials (and of the server the simulator starts), kept between runs")
	fs.StringVar(&o.thinfleet, "thinfleet", "", "the thinfleet binary to start as the server (default: thinfleet beside this binary, else bin/thinfleet, else on PATH)")
	fs.StringVar(&o.natsURL, "nats-url", "", "a running server's NATS URL (default: start one)")
	fs.StringVar(&o.apiURL, "api", "", "a running server's HTTP URL, with --nats-url")
	fs.StringVar(&o.updates, "updates", "", "a running server's updates folder, with --nats-url, for fanout and rollout")
	fs.StringVar(&o.adminToken, "admin-token", getenv("THINFLEET_ADMIN_TOKEN"), "a running server's admin token (THINFLEET_ADMIN_TOKEN)")
	fs.StringVar(&o.enrollToken, "enroll-token", getenv("THINFLEET_ENROLL_TOKEN"), "a running server's enrollment token (THINFLEET_ENROLL_TOKEN)")
	fs.StringVar(&o.prefix, "prefix", "sim", "device ids are PREFIX-00000, PREFIX-00001, ...")
	fs.StringVar(&o.scenarios, "scenarios", strings.Join(allScenarios, ","), "the scenarios to run, comma separated")
	fs.DurationVar(&o.heartbeat, "heartbeat", 5*time.Second, "the agents' heartbeat interval")
	fs.DurationVar(&o.hold, "hold", 30*time.Second, "how long hold measures the server with every agent connected")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "longest wait of any step (enrolling, all alive, all offered, ...)")
	fs.Int64Var(&o.zipSize, "zip-size", 1<<20, "size in bytes of the rollout's zip")
	fs.IntVar(&o.group, "group", 1000, "agents that go silent, and that disconnect (at most --agents)")
	fs.IntVar(&o.apiRequests, "api-requests", 200, "requests of each endpoint in the api scenario")
	fs.IntVar(&o.apiConcurrency, "api-concurrency", 20, "requests at once in the api scenario")
	fs.StringVar(&o.nginx, "nginx", "nginx", "the nginx binary the rollout compares with (none: skip)")
	fs.StringVar(&o.serverArgs, "server-args", "", "more flags for the server the simulator starts, space separated")
	fs.StringVar(&o.labels, "labels", "", "labels every agent reports, `k=v,k2=v2` (as thinfleet-agent --label)")
	fs.IntVar(&o.canaryEvery, "canary-every", 0, "every `N`th agent also reports ring=canary, the others ring=main (0: no ring label)")
	fs.StringVar(&o.platforms, "platforms", "", "the `os/arch` the agents report, comma separated, agent i the (i mod n)-th (default linux/amd64)")
	fs.DurationVar(&o.installTime, "install-time", 0, "how long each install takes after its download is checked")
	fs.Func("fail", "installs of `VERSION:PERCENT[:once]` fail on that share of the agents, spread evenly by index; once: only the first try (repeatable; VERSION * is every version)", func(s string) error {
		f, err := simfleet.ParseFailure(s)
		if err == nil {
			o.failures = append(o.failures, f)
		}
		return err
	})
}

// behaviour is what the options make the agents report and do; run has
// checked the labels and platforms.
func (o *options) behaviour() simfleet.Behaviour {
	labels := map[string]string{}
	_ = wire.ParseLabels(o.labels, labels)
	platforms, _ := simfleet.ParsePlatforms(o.platforms)
	return simfleet.Behaviour{Labels: labels, CanaryEvery: o.canaryEvery, Platforms: platforms,
		InstallTime: o.installTime, Failures: o.failures}
}

var allScenarios = []string{"hold", "api", "fanout", "rollout", "silent", "disconnect"}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "table" {
		return runTable(args[1:], stdout, stderr)
	}
	// Progress, the agents' warnings and the server's start all write to
	// stderr, from many goroutines.
	stderr = &lockedWriter{w: stderr}
	fs := flag.NewFlagSet("thinfleet-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	o.register(fs, getenv)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	scen := map[string]bool{}
	for s := range strings.SplitSeq(o.scenarios, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			return fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(allScenarios, ", "))
		}
		scen[s] = true
	}
	if err := wire.ParseLabels(o.labels, map[string]string{}); err != nil {
		return fmt.Errorf("--labels: %w", err)
	}
	if _, err := simfleet.ParsePlatforms(o.platforms); err != nil {
		return fmt.Errorf("--platforms: %w", err)
	}
	if o.canaryEvery < 0 {
		return fmt.Errorf("--canary-every %d: want 0 or more", o.canaryEvery)
	}
	if o.agents < 1 || o.agents > 100000 {
		return fmt.Errorf("--agents %d: want 1 to 100000", o.agents)
	}
	if o.natsURL != "" && (o.apiURL == "" || o.adminToken == "" || o.enrollToken == "") {
		return errors.New("with --nats-url, give --api, --admin-token and --enroll-token too")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	progress := func(msg string, kv ...any) {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s", time.Now().Format("15:04:05"), msg)
		for i := 0; i+1 < len(kv); i += 2 {
			fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
		}
		b.WriteByte('\n')
		_, _ = io.WriteString(stderr, b.String())
	}
	fdlimit.Raise(log)

	res := &results{Agents: o.agents, Started: time.Now().UTC(), Scenarios: o.scenarios, LoadStart: loadAvg()}
	state, err := filepath.Abs(o.state)
	if err != nil {
		return err
	}
	var srv *server
	natsURL, apiURL, updates, admin, enroll := o.natsURL, o.apiURL, o.updates, o.adminToken, o.enrollToken
	if natsURL == "" {
		bin, err := findThinfleet(o.thinfleet)
		if err != nil {
			return err
		}
		sctx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
		defer stopServer()
		srv, err = startServer(sctx, bin, filepath.Join(state, "server"), strings.Fields(o.serverArgs), stderr)
		if err != nil {
			return err
		}
		defer srv.stop()
		natsURL, apiURL, updates, admin, enroll = srv.natsURL, srv.apiURL, srv.updates, srv.admin, srv.enroll
		res.ServerStarted = true
		if st, err := readProc(srv.pid()); err == nil {
			res.Server.RSSIdleMiB = mib(st.rss)
		}
	}
	sim := &simulation{o: &o, res: res, srv: srv, api: newAPI(apiURL, admin), updates: updates, progress: progress}
	sim.f = simfleet.New(simfleet.Options{
		Agents: o.agents, Prefix: o.prefix, NATSURL: natsURL, EnrollToken: enroll,
		Dir: filepath.Join(state, "agents", o.prefix), Heartbeat: o.heartbeat, Timeout: o.timeout,
		Log: log, Behaviour: o.behaviour(),
	})
	err = sim.run(ctx, scen)
	res.LoadEnd = loadAvg()
	res.Seconds = round3(time.Since(res.Started).Seconds())
	if err != nil {
		res.Problems = append(res.Problems, err.Error())
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if eerr := enc.Encode(res); eerr != nil {
		return eerr
	}
	if len(res.Problems) > 0 {
		return fmt.Errorf("%d problems: %s", len(res.Problems), strings.Join(res.Problems, "; "))
	}
	return nil
}

// findThinfleet resolves the server binary: the flag, else thinfleet
// beside this executable, else bin/thinfleet, else on PATH.
func findThinfleet(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	var tries []string
	if exe, err := os.Executable(); err == nil {
		tries = append(tries, filepath.Join(filepath.Dir(exe), "thinfleet"))
	}
	tries = append(tries, filepath.Join("bin", "thinfleet"))
	for _, p := range tries {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return filepath.Abs(p)
		}
	}
	if p, err := exec.LookPath("thinfleet"); err == nil {
		return p, nil
	}
	return "", errors.New("no thinfleet binary: build it (go build -o bin/thinfleet ./cmd/thinfleet) or give --thinfleet, or --nats-url for a running server")
}

func mib(b int64) float64 { return float64(int64(float64(b)/(1<<20)*10+0.5)) / 10 }

// lockedWriter serializes the writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
