package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/agent"
	"github.com/thinfleet/thinfleet/settings"
	"github.com/thinfleet/thinfleet/wire"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usageHead = `thinfleet-agent keeps this machine on the version of its software that
the thinfleet server chooses. It connects to the server over NATS, reports
the machine's hardware and installed version, sends a heartbeat so the
server knows it is alive, and installs the updates it is offered: it
downloads the update zip, checks its size and sha256 (and, given
--publisher-key, the publisher's signature), unpacks it into a fresh
folder and runs the update's command there with /bin/sh -c. Only a
command that exits 0 changes the installed version; a failure is reported
with the end of the command's output and the old version stays.

It runs until stopped (SIGINT or SIGTERM) and reconnects by itself when the
server goes away. Run it as a service, one per machine.

Usage:
  thinfleet-agent --server nats://SERVER:4222 --enroll-token TOKEN

The server prints the address and the enrollment token at its first start.

Flags (each can also be set in the environment as THINFLEET_<NAME>, e.g.
THINFLEET_ENROLL_TOKEN; a flag on the command line wins):
`

const usageTail = `
Install commands run with these in their environment:
  THINFLEET_VERSION           the version being installed
  THINFLEET_PREVIOUS_VERSION  the version installed before ("" if none)
  THINFLEET_PACKAGE_DIR       the folder the update was unpacked into, the
                              command's working directory
  THINFLEET_RELEASE_DIR       where that folder is kept after a success
`

// options are the agent's flags.
type options struct {
	server, state, id, enrollToken string
	heartbeat, commandTimeout      time.Duration
	logFormat, logLevel            string
	version                        bool
	ca                             string
	publisherKey                   string
	labels                         labelsFlag
}

// noEnv are the flags not read from the environment: install commands
// run with THINFLEET_VERSION set, and must not turn an agent they start
// into one that prints its version. --label is read from THINFLEET_LABEL
// like every flag (a comma separated list), and, when neither gives any,
// from THINFLEET_LABELS, read by run itself.
var noEnv = map[string]bool{"version": true}

// labelsFlag is --label: repeatable, each "key=value" or a comma separated
// list of them.
type labelsFlag map[string]string

func (l *labelsFlag) String() string {
	if l == nil || *l == nil {
		return ""
	}
	return labelsString(*l)
}

func (l *labelsFlag) Set(s string) error {
	if *l == nil {
		*l = labelsFlag{}
	}
	return wire.ParseLabels(s, *l)
}

// labelsString is labels as "k1=v1,k2=v2", sorted by key.
func labelsString(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

// run is the whole program; main only adds the process around it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	getenv = settings.Getenv(getenv) // THINFLEET_ENROLL_TOKEN_FILE and the like
	fs := flag.NewFlagSet("thinfleet-agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run reports parse errors itself
	var o options
	fs.StringVar(&o.server, "server", "nats://127.0.0.1:4222", "the thinfleet server's NATS `URL`; several separated by commas")
	fs.StringVar(&o.state, "state", defaultStateDir(os.Geteuid(), getenv), "`folder` for the agent's id, state, downloads and installed packages")
	fs.StringVar(&o.id, "id", "", "this machine's device `ID` (default: generated once from the host name and kept in the state folder)")
	fs.StringVar(&o.enrollToken, "enroll-token", "", "the `token` the server gave for agents, needed once to enroll (better set as THINFLEET_ENROLL_TOKEN)")
	fs.StringVar(&o.ca, "ca", "", "PEM `file` of the authority that signed the server's TLS certificate (default: the system's)")
	fs.StringVar(&o.publisherKey, "publisher-key", "", "the publisher's public key `file` (thinfleet keygen's publisher.pub): install only releases signed with it")
	fs.DurationVar(&o.heartbeat, "heartbeat", agent.DefaultHeartbeat, "time between heartbeats; the server counts the agent gone after three missed")
	fs.DurationVar(&o.commandTimeout, "command-timeout", agent.DefaultCommandTimeout, "stop an install command that runs longer than this")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Var(&o.labels, "label", "a `key=value` label of this machine (site=berlin), for the server's groups and rollouts; repeat it for more, or set THINFLEET_LABELS=site=berlin,ring=canary")
	fs.BoolVar(&o.version, "version", false, "print the agent's version and exit")
	if err := settings.Parse(fs, args, getenv, noEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, fs)
			return nil
		}
		return fmt.Errorf("%w (see thinfleet-agent --help)", err)
	}
	if env := getenv("THINFLEET_LABELS"); o.labels == nil && env != "" {
		if err := o.labels.Set(env); err != nil {
			return fmt.Errorf("THINFLEET_LABELS: %w", err)
		}
	}
	if o.version {
		fmt.Fprintln(stdout, "thinfleet-agent", version)
		return nil
	}
	log, err := settings.Logger(o.logFormat, o.logLevel, stderr)
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Options{
		Server:         o.server,
		StateDir:       o.state,
		ID:             o.id,
		EnrollToken:    o.enrollToken,
		CA:             o.ca,
		PublisherKey:   o.publisherKey,
		Heartbeat:      o.heartbeat,
		CommandTimeout: o.commandTimeout,
		AgentVersion:   version,
		Labels:         o.labels,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, usageHead)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	fmt.Fprint(w, usageTail)
}

// defaultStateDir is /var/lib/thinfleet-agent for root, else the user's
// state folder ($XDG_STATE_HOME, or ~/.local/state).
func defaultStateDir(euid int, getenv func(string) string) string {
	if euid == 0 {
		return "/var/lib/thinfleet-agent"
	}
	if x := getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "thinfleet-agent")
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".local", "state", "thinfleet-agent")
	}
	return "thinfleet-agent-state"
}
