package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/thinfleet/thinfleet/services/decision"
	"github.com/thinfleet/thinfleet/services/enroll"
)

// Every command has its own options, filled by its own flag.FlagSet made
// in run. Flags that several commands share come in small groups: each
// group is a function that registers its flags on a FlagSet and returns
// the struct they land in, so no flag is defined twice. Nothing is
// written into options after parsing: what a command derives from them
// (the public URL, the resolved HTTP limits, the tokens) goes into values
// of its own.

// env is what every command gets besides its options.
type env struct {
	log    *slog.Logger
	getenv func(string) string
	stdout io.Writer
	// args are the words after the flags, for a command that takes some.
	args []string
	// tune is what a test sets on the services (tuning.go).
	tune tuning
}

// command is one of thinfleet's commands.
type command struct {
	help string
	// args, when set, names the words the command takes after its flags.
	args string
	// flags registers the command's flags on fs and returns the command,
	// to run once they are parsed.
	flags func(fs *flag.FlagSet) func(context.Context, env) error
}

var commands = map[string]command{
	"server": {
		help:  "Runs the broker, every service and the web API in one process.",
		flags: serverFlags,
	},
	"broker": {
		help:  "Runs the embedded NATS server with JetStream, and the enrollment service and the intake beside it; the other services connect to it.",
		flags: brokerFlags,
	},
	"enroll": {
		help:  "Answers agents asking for their credentials and carries out revocations; runs inside \"broker\", or alone against a stock nats-server (see nats-config).",
		flags: enrollFlags,
	},
	"nats-config": {
		help:  "Prints the nats-server configuration (operator and accounts) that lets a stock nats-server serve thinfleet, from the tokens in --data or the environment; it never makes tokens, so a folder without them is refused.",
		flags: natsConfigFlags,
	},
	"catalog": {
		help:  "Watches the updates folder and keeps the release catalog.",
		flags: catalogFlags,
	},
	"decision": {
		help:  "Offers the target version to every out-of-date device.",
		flags: decisionFlags,
	},
	"presence": {
		help:  "Tells alive from notAlive, from heartbeats and the broker's connection events.",
		flags: serviceFlags("presence"),
	},
	"inventory": {
		help:  "Keeps the device records: hardware and installed version.",
		flags: serviceFlags("inventory"),
	},
	"intake": {
		help:  "Stores the agents' reports in the agent stream, refusing replies outside an agent's inbox and pacing each device (runs inside broker; alone only beside a stock nats-server).",
		flags: serviceFlags("intake"),
	},
	"history": {
		help:  "Keeps the append-only update history.",
		flags: serviceFlags("history"),
	},
	"web": {
		help:  "Serves the JSON API and the downloads.",
		flags: webFlags,
	},
	"keygen": {
		help:  "Makes a publisher key pair: publisher.key (private, mode 0600; keep it off the server) and publisher.pub (public, for --publisher-key). Never overwrites a key.",
		flags: keygenFlags,
	},
	"sign": {
		help:  "Checks each update zip as the catalog will, then writes its detached signature beside it as ZIP.sig.",
		args:  "ZIP...",
		flags: signFlags,
	},
	"devices": {
		help:  "Lists the devices (enrollment, alive, version, labels and tags, pin); approves, revokes or deletes devices; sets and removes operators' tags on them, by id or by --selector. Revoking closes the device's connection at once and refuses it from then on. The admin token comes from THINFLEET_ADMIN_TOKEN or the data folder.",
		args:  "[list | approve ID... | revoke ID... | delete ID... | tag ID... k=v... [--remove KEY]]",
		flags: devicesFlags,
	},
	"pin": {
		help:  "Pins a device, or every device of a group, to a version of the catalog: it is offered that version (an upgrade or a deliberate downgrade) and no rollout moves it. Without arguments, lists the pins.",
		args:  "[DEVICE VERSION | --remove DEVICE | --group GROUP VERSION | --group GROUP --remove]",
		flags: pinFlags,
	},
	"groups": {
		help:  "Lists, sets or deletes groups: saved label selectors, each of which may follow a release channel and have a maintenance window.",
		args:  "[list | set NAME --selector k=v [--channel C] [--window W] | delete NAME]",
		flags: groupsFlags,
	},
	"rollout": {
		help:  rolloutHelp(),
		args:  "VERB [ID] [VERSION]",
		flags: rolloutFlags,
	},
	"audit": {
		help:  "Prints the audit log, newest first: every operator action, who did it and when. The admin token comes from THINFLEET_ADMIN_TOKEN or the data folder.",
		flags: auditFlags,
	},
	"healthcheck": {
		help:  "Asks a health URL and exits 0 when it answers 200: the health check of a container without a shell.",
		flags: healthcheckFlags,
	},
	"tokens": {
		help:  "Makes the server's tokens in the data folder, unless there, and prints them (docker compose runs it first).",
		flags: tokensFlags,
	},
}

// logFlags choose the log of every command.
type logFlags struct {
	format, level string
}

func logFlagsOn(fs *flag.FlagSet) *logFlags {
	var f logFlags
	fs.StringVar(&f.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.level, "log-level", "info", "log level: debug, info, warn or error")
	return &f
}

// dataFlag is the server's data folder.
func dataFlag(fs *flag.FlagSet) *string {
	return fs.String("data", "./data", "folder for the server's state (JetStream files, generated tokens)")
}

// updatesFlags are the drop folder's.
type updatesFlags struct {
	dir    string
	rescan time.Duration
}

func updatesFlagsOn(fs *flag.FlagSet) *updatesFlags {
	var f updatesFlags
	fs.StringVar(&f.dir, "updates", "./updates", "the drop folder: update zips put here are published")
	fs.DurationVar(&f.rescan, "rescan", 30*time.Second, "rescan the updates folder this often, besides watching it")
	return &f
}

// listenFlags are the embedded broker's.
type listenFlags struct {
	addr       string // --nats
	serverName string
}

func listenFlagsOn(fs *flag.FlagSet) *listenFlags {
	var f listenFlags
	fs.StringVar(&f.addr, "nats", ":4222", "address agents connect to (the embedded NATS server)")
	fs.StringVar(&f.serverName, "server-name", "", "NATS server name, unique in a cluster (default: the host name)")
	return &f
}

// clientFlags are those of a service that runs alone against a NATS
// server.
type clientFlags struct {
	url          string // --nats-url
	serviceToken string
	replicas     int
	ca           string
}

func clientFlagsOn(fs *flag.FlagSet) *clientFlags {
	var f clientFlags
	fs.StringVar(&f.url, "nats-url", "nats://127.0.0.1:4222", "NATS server(s) to use, comma separated")
	fs.StringVar(&f.serviceToken, "service-token", "", "password of the broker's service user (THINFLEET_SERVICE_TOKEN)")
	fs.IntVar(&f.replicas, "replicas", 1, "replicas of every JetStream bucket and stream: 1, or 3 on a three-node cluster")
	fs.StringVar(&f.ca, "ca", "", "PEM `file` of the authority that signed the broker's TLS certificate (default: the system's)")
	return &f
}

// publicURLFlag is the base of download links.
func publicURLFlag(fs *flag.FlagSet) *string {
	return fs.String("public-url", "", "base URL of download links as agents reach it (default: http://<host name>:<http port>)")
}

// tlsFlags are the certificate the broker and the HTTP side serve.
type tlsFlags struct {
	cert, key string
}

func tlsFlagsOn(fs *flag.FlagSet) *tlsFlags {
	var f tlsFlags
	fs.StringVar(&f.cert, "tls-cert", "", "PEM certificate `file`: serve the broker and HTTP over TLS (with --tls-key)")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key `file` of --tls-cert")
	return &f
}

// approveFlag keeps new agents pending until an operator approves.
func approveFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("approve-devices", false, "keep new agents pending until an operator approves them (thinfleet devices approve ID)")
}

// enrollLimits bound how many new devices enroll per second
// (services/enroll's defaults unless raised, for benchmarks).
type enrollLimits struct {
	rate  float64
	burst int
}

func enrollLimitsOn(fs *flag.FlagSet) *enrollLimits {
	var l enrollLimits
	fs.Float64Var(&l.rate, "enroll-rate", enroll.DefaultRate, "most new devices enrolled per second (raise it to enroll a simulated fleet at once)")
	fs.IntVar(&l.burst, "enroll-burst", enroll.DefaultBurst, "most new devices enrolled at once before --enroll-rate applies")
	return &l
}

// retryFlags are the automatic retry of failed installs (decision).
type retryFlags struct{ policy decision.RetryPolicy }

func retryFlagsOn(fs *flag.FlagSet) *retryFlags {
	f := retryFlags{decision.DefaultRetry}
	fs.DurationVar(&f.policy.First, "retry-first", f.policy.First, "pause before the first automatic retry of a failed install; each later pause is twice the one before")
	fs.DurationVar(&f.policy.Last, "retry-max", f.policy.Last, "longest pause between automatic retries of a failed install")
	fs.IntVar(&f.policy.Tries, "retry-tries", f.policy.Tries, "failed installs of one release that hold a device back until an operator offers it again")
	return &f
}

// check refuses a policy that cannot be meant.
func (f *retryFlags) check() error {
	p := f.policy
	switch {
	case p.First <= 0:
		return fmt.Errorf("--retry-first %s: want a pause above zero", p.First)
	case p.Last < p.First:
		return fmt.Errorf("--retry-max %s: want at least --retry-first (%s)", p.Last, p.First)
	case p.Tries < 1:
		return fmt.Errorf("--retry-tries %d: want 1 or more", p.Tries)
	}
	return nil
}

// opsFlag is the address of a process's /metrics, /healthz and /readyz.
func opsFlag(fs *flag.FlagSet) *string {
	return fs.String("metrics", "", "serve /metrics, /healthz and /readyz on this `address`, e.g. :9090 (off when empty)")
}
