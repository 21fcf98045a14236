package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/thinfleet/thinfleet/settings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `thinfleet keeps a fleet of client machines on the right version of their
software. Agents on the clients report to this server; drop an update zip
into the updates folder and every out-of-date agent installs it.

Usage:
  thinfleet server [flags]     run everything in one process (start here)
  thinfleet devices [list | approve ID... | revoke ID... | delete ID...]
                               list devices (alive, version, labels, pin); decide which may connect
  thinfleet devices tag ID... k=v... [--remove KEY] | --selector k=v k=v...
                               set and remove tags on devices
  thinfleet pin DEVICE VERSION [--reason R] | --remove DEVICE | --group G VERSION
                               hold a device or a group on one version
  thinfleet groups [list | set NAME --selector k=v [--channel C] [--window W] | delete NAME]
                               saved selectors, their channel and window
  thinfleet rollout create ID --version V [--selector k=v | --group G] [--waves canary:10,50,100]
  thinfleet rollout list | status ID | pause|resume|abort|rollback ID | release ID VERSION
                               roll a release out wave by wave, follow and steer it
  thinfleet audit [--limit N]  every operator action: who, what and when
  thinfleet keygen [--out DIR] make a publisher key pair for signed releases
  thinfleet sign --key publisher.key ZIP...
                               sign update zips (writes ZIP.sig beside each)
  thinfleet version            print the version

Each part of the server can also run alone against a NATS server, as
docker compose does (see docker-compose.yml):
  thinfleet broker     the embedded NATS server with JetStream
  thinfleet catalog    watches the updates folder, keeps the release catalog
  thinfleet decision   offers each device its planned version; moves the rollouts
  thinfleet presence   alive / notAlive from heartbeats and connections
  thinfleet inventory  device records: hardware and installed version
  thinfleet history    the append-only update history
  thinfleet web        the JSON API and the downloads
  thinfleet enroll     agents' credentials and revocations (inside broker, or alone)
  thinfleet intake     agents' reports into the agent stream (inside broker, or alone)
Against a stock nats-server:
  thinfleet nats-config  print the operator and accounts for nats-server -c
and, for containers:
  thinfleet tokens       make the tokens into --data once, and print them
  thinfleet healthcheck  exit 0 when --url answers 200

Run "thinfleet COMMAND -h" for a command's flags. Every flag can also be
set in the environment as THINFLEET_<NAME>, e.g. THINFLEET_PUBLIC_URL,
or read from the file named by THINFLEET_<NAME>_FILE.
`

// run is the whole program; main only adds the process around it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWith(ctx, args, getenv, stdout, stderr, tuning{})
}

func runWith(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, tune tuning) error {
	getenv = settings.Getenv(getenv)
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "thinfleet", version)
		return nil
	}
	c, ok := commands[cmd]
	if !ok {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	fs := flag.NewFlagSet("thinfleet "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	logf := logFlagsOn(fs)
	runCmd := c.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: thinfleet %s [flags] %s\n\n%s\n\nFlags (each also read from THINFLEET_<NAME>):\n", cmd, c.args, c.help)
		fs.PrintDefaults()
	}
	var words []string
	if c.args != "" {
		// Words after the flags belong to the command (devices approve ID).
		rest, words = splitArgs(fs, rest)
	}
	if err := settings.Parse(fs, rest, getenv, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log, err := settings.Logger(logf.format, logf.level, stderr)
	if err != nil {
		return err
	}
	return runCmd(ctx, env{log: log, getenv: getenv, stdout: stdout, args: words, tune: tune})
}
