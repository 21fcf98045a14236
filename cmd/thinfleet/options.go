package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"time"
)

// options holds every flag of every command; each command registers the
// groups it uses.
type options struct {
	data         string
	updates      string
	http         string
	httpLimits   httpLimits
	nats         string
	natsURL      string
	publicURL    string
	serviceToken string
	// enrollToken, when known, lets the enrollment service watch the
	// enrollment account's connections.
	enrollToken string
	// approveDevices keeps new agents pending until an operator approves.
	approveDevices bool
	ca             string
	serverName     string
	rescan         time.Duration
	tlsCert        string
	tlsKey         string
	logFormat      string
	logLevel       string
	// args are the words after the flags, for a command that takes some.
	args []string
	// Publisher and download keys (keys.go).
	keys keyFlags
	// api is the server's HTTP address, for commands that use its API.
	api string
	// Operations (ops.go) and clustering (cluster.go).
	ops string
	url string
	// The published ports "tokens" prints addresses with (PORT or
	// HOST:PORT, as docker compose's ports take them).
	httpPort, natsPort string
	replicas           int
	cluster            clusterFlags
}

type flagGroup int

const (
	flagData flagGroup = 1 << iota
	flagAPI
	flagApprove
	flagUpdates
	flagHTTP
	flagNATSListen
	flagNATSURL
	flagPublicURL
	flagOps
	flagCluster
	flagCheck
	flagPublisherKey
	flagDownloadKey
	flagKeygen
	flagSign
	flagTokens
)

func (o *options) register(fs *flag.FlagSet, groups flagGroup) {
	if groups&flagApprove != 0 {
		fs.BoolVar(&o.approveDevices, "approve-devices", false, "keep new agents pending until an operator approves them (thinfleet devices approve ID)")
	}
	if groups&flagAPI != 0 {
		fs.StringVar(&o.api, "api", "http://127.0.0.1:8080", "the thinfleet server's HTTP `URL`, or host:port")
	}
	if groups&flagData != 0 {
		fs.StringVar(&o.data, "data", "./data", "folder for the server's state (JetStream files, generated tokens)")
	}
	if groups&flagUpdates != 0 {
		fs.StringVar(&o.updates, "updates", "./updates", "the drop folder: update zips put here are published")
		fs.DurationVar(&o.rescan, "rescan", 30*time.Second, "rescan the updates folder this often, besides watching it")
	}
	if groups&flagHTTP != 0 {
		fs.StringVar(&o.http, "http", ":8080", "address of the web API and downloads")
		o.httpLimits.register(fs)
	}
	if groups&flagNATSListen != 0 {
		fs.StringVar(&o.nats, "nats", ":4222", "address agents connect to (the embedded NATS server)")
		fs.StringVar(&o.serverName, "server-name", "", "NATS server name, unique in a cluster (default: the host name)")
	}
	if groups&flagNATSURL != 0 {
		fs.StringVar(&o.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server(s) to use, comma separated")
		fs.StringVar(&o.serviceToken, "service-token", "", "password of the broker's service user (THINFLEET_SERVICE_TOKEN)")
		fs.IntVar(&o.replicas, "replicas", 1, "replicas of every JetStream bucket and stream: 1, or 3 on a three-node cluster")
		fs.StringVar(&o.ca, "ca", "", "PEM `file` of the authority that signed the broker's TLS certificate (default: the system's)")
	}
	if groups&flagPublicURL != 0 {
		fs.StringVar(&o.publicURL, "public-url", "", "base URL of download links as agents reach it (default: http://<host name>:<http port>)")
	}
	if groups&(flagNATSListen|flagHTTP) != 0 {
		fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate `file`: serve the broker and HTTP over TLS (with --tls-key)")
		fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key `file` of --tls-cert")
	}
	o.registerOps(fs, groups)
	o.registerKeys(fs, groups)
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

type command struct {
	help string
	// args, when set, names the words the command takes after its flags.
	args  string
	flags flagGroup
	run   func(ctx context.Context, o *options, log *slog.Logger, getenv func(string) string, stdout io.Writer) error
}

var commands = map[string]command{
	"server": {
		help:  "Runs the broker, every service and the web API in one process.",
		flags: flagData | flagUpdates | flagHTTP | flagNATSListen | flagPublicURL | flagPublisherKey | flagApprove,
		run:   runServer,
	},
	"broker": {
		help:  "Runs the embedded NATS server with JetStream, and the enrollment service and the intake beside it; the other services connect to it.",
		flags: flagData | flagNATSListen | flagOps | flagCluster | flagApprove,
		run:   runBroker,
	},
	"enroll": {
		help:  "Answers agents asking for their credentials and carries out revocations; runs inside \"broker\", or alone against a stock nats-server (see nats-config).",
		flags: flagNATSURL | flagApprove | flagOps,
		run:   runEnroll,
	},
	"nats-config": {
		help:  "Prints the nats-server configuration (operator and accounts) that lets a stock nats-server serve thinfleet, from the tokens in --data or the environment; it never makes tokens, so a folder without them is refused.",
		flags: flagData,
		run:   runNATSConfig,
	},
	"catalog": {
		help:  "Watches the updates folder and keeps the release catalog.",
		flags: flagNATSURL | flagUpdates | flagOps | flagPublisherKey,
		run:   runAlone("catalog"),
	},
	"decision": {
		help:  "Offers the target version to every out-of-date device.",
		flags: flagNATSURL | flagPublicURL | flagOps | flagDownloadKey,
		run:   runAlone("decision"),
	},
	"presence": {
		help:  "Tells alive from notAlive, from heartbeats and the broker's connection events.",
		flags: flagNATSURL | flagOps,
		run:   runAlone("presence"),
	},
	"inventory": {
		help:  "Keeps the device records: hardware and installed version.",
		flags: flagNATSURL | flagOps,
		run:   runAlone("inventory"),
	},
	"intake": {
		help:  "Stores the agents' reports in the agent stream, refusing replies outside an agent's inbox and pacing each device (runs inside broker; alone only beside a stock nats-server).",
		flags: flagNATSURL | flagOps,
		run:   runAlone("intake"),
	},
	"history": {
		help:  "Keeps the append-only update history.",
		flags: flagNATSURL | flagOps,
		run:   runAlone("history"),
	},
	"web": {
		help:  "Serves the JSON API and the downloads.",
		flags: flagNATSURL | flagUpdates | flagHTTP | flagPublicURL | flagDownloadKey,
		run:   runAlone("web"),
	},
	"keygen": {
		help:  "Makes a publisher key pair: publisher.key (private, mode 0600; keep it off the server) and publisher.pub (public, for --publisher-key). Never overwrites a key.",
		flags: flagKeygen,
		run:   runKeygen,
	},
	"sign": {
		help:  "Checks each update zip as the catalog will, then writes its detached signature beside it as ZIP.sig.",
		args:  "ZIP...",
		flags: flagSign,
		run:   runSign,
	},
	"devices": {
		help:  "Lists the devices' enrollments, or approves or revokes one. Revoking closes the device's connection at once and refuses it from then on. The admin token comes from THINFLEET_ADMIN_TOKEN or the data folder.",
		args:  "[list | approve ID | revoke ID]",
		flags: flagAPI | flagData,
		run:   runDevices,
	},
	"healthcheck": {
		help:  "Asks a health URL and exits 0 when it answers 200: the health check of a container without a shell.",
		flags: flagCheck,
		run:   runHealthcheck,
	},
	"tokens": {
		help:  "Makes the server's tokens in the data folder, unless there, and prints them (docker compose runs it first).",
		flags: flagData | flagTokens,
		run:   runTokens,
	},
}
