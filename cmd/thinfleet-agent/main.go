// Command thinfleet-agent is the thinfleet client. It runs on every
// managed machine, reports the machine's hardware and installed version to
// the thinfleet server, and installs the updates the server offers.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "thinfleet-agent:", err)
		os.Exit(1)
	}
}
