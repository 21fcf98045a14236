// Command thinfleet-sim runs a simulated fleet against a thinfleet server:
// N agents in one process, each with its own broker connection and
// credentials, speaking the agent's own protocol code (agent.Session),
// through scenarios that measure what the operator and the server see. It
// prints its progress on stderr and one JSON object of figures on stdout.
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
		fmt.Fprintln(os.Stderr, "thinfleet-sim:", err)
		os.Exit(1)
	}
}
