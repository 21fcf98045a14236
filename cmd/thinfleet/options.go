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
	nats         string
	natsURL      string
	publicURL    string
	serviceToken string
	// approveDevices keeps new agents pending until an operator approves.
	approveDevices bool
	ca             string
	serverName     string
	rescan         time.Duration
	tlsCert        string
	tlsKey         string
	logFormat      string
	logLevel       string
	// Operations (ops.go) and clustering (cluster.go).
	ops      string
	url      string
	replicas int
	cluster  clusterFlags
}

type flagGroup int

const (
	flagData flagGroup = 1 << iota
	flagUpdates
	flagHTTP
	flagNATSListen
	flagNATSURL
	flagPublicURL
	flagOps
	flagCluster
	flagCheck
	flagTokens
)

func (o *options) register(fs *flag.FlagSet, groups flagGroup) {
	if groups&flagData != 0 {
		fs.StringVar(&o.data, "data", "./data", "folder for the server's state (JetStream files, generated tokens)")
	}
	if groups&flagUpdates != 0 {
		fs.StringVar(&o.updates, "updates", "./updates", "the drop folder: update zips put here are published")
		fs.DurationVar(&o.rescan, "rescan", 30*time.Second, "rescan the updates folder this often, besides watching it")
	}
	if groups&flagHTTP != 0 {
		fs.StringVar(&o.http, "http", ":8080", "address of the web API and downloads")
	}
	if groups&flagNATSListen != 0 {
		fs.StringVar(&o.nats, "nats", ":4222", "address agents connect to (the embedded NATS server)")
		fs.BoolVar(&o.approveDevices, "approve-devices", false, "keep new agents pending until an operator approves them (thinfleet devices approve ID)")
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
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

type command struct {
	help  string
	flags flagGroup
	run   func(ctx context.Context, o *options, log *slog.Logger, getenv func(string) string, stdout io.Writer) error
}

var commands = map[string]command{
	"server": {
		help:  "Runs the broker, every service and the web API in one process.",
		flags: flagData | flagUpdates | flagHTTP | flagNATSListen | flagPublicURL,
		run:   runServer,
	},
	"broker": {
		help:  "Runs the embedded NATS server with JetStream alone; the services connect to it.",
		flags: flagData | flagNATSListen | flagOps | flagCluster,
		run:   runBroker,
	},
	"catalog": {
		help:  "Watches the updates folder and keeps the release catalog.",
		flags: flagNATSURL | flagUpdates | flagOps,
		run:   runAlone("catalog"),
	},
	"decision": {
		help:  "Offers the target version to every out-of-date device.",
		flags: flagNATSURL | flagPublicURL | flagOps,
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
	"history": {
		help:  "Keeps the append-only update history.",
		flags: flagNATSURL | flagOps,
		run:   runAlone("history"),
	},
	"web": {
		help:  "Serves the JSON API and the downloads.",
		flags: flagNATSURL | flagUpdates | flagHTTP | flagPublicURL,
		run:   runAlone("web"),
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
