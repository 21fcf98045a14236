package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/wire"
)

// Reconnect backoff: doubling from reconnectBase after every round over
// the server list, capped at reconnectMax, each delay with jitter so that
// a fleet does not come back in lockstep after a server restart.
const (
	reconnectBase = 250 * time.Millisecond
	reconnectMax  = 30 * time.Second
)

// connect opens the agent's connection to the broker. It is the one place
// that knows how an agent proves who it is: its credentials file, whose
// JWT the broker lets publish and subscribe only on the subjects of its
// own id, with replies on its own inbox prefix.
//
// The connection is named after the device id, which is how the server
// maps the broker's disconnect events to devices. It never gives up: the
// first connect is retried like a reconnect, so an agent started before
// its server simply waits, and a rejected token is retried too, since the
// server may yet accept it. onConnect runs after every (re)connect,
// onAuthError at every refusal of the credentials (and logs it), delay
// gives the pause after the attempts-th failed round.
func connect(o Options, id, creds string, log *slog.Logger, onConnect func(), onAuthError func(error), delay func(attempts int) time.Duration) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(id),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.IgnoreAuthErrorAbort(),
		// nats.go applies this jitter only without a custom delay; it is
		// set so that dropping reconnectDelay keeps the fleet spread out.
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.CustomReconnectDelay(delay),
		// Find a dead connection within a minute rather than the default
		// four, so the agent reconnects (and reports) sooner.
		nats.PingInterval(20 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("connected", "server", nc.ConnectedUrlRedacted())
			onConnect()
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected", "server", nc.ConnectedUrlRedacted())
			onConnect()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected", "err", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if isAuthError(err) {
				onAuthError(err)
				return
			}
			log.Warn("nats error", "err", err)
		}),
	}
	if o.CA != "" {
		opts = append(opts, nats.RootCAs(o.CA))
	}
	opts = append(opts, nats.UserCredentials(creds), nats.CustomInboxPrefix(wire.AgentInboxPrefix(id)))
	nc, err := nats.Connect(o.Server, opts...)
	if err != nil {
		return nil, fmt.Errorf("agent: connect to %s: %w", o.Server, err)
	}
	return nc, nil
}

// reconnectDelay is the wait after the attempts-th failed round over the
// server list: capped exponential backoff with equal jitter (half fixed,
// half random).
func reconnectDelay(attempts int) time.Duration {
	return jittered(backoff(reconnectBase, reconnectMax, attempts))
}

// backoff returns base doubled n-1 times, at most max.
func backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// jittered returns a duration in [d/2, d).
func jittered(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// isAuthError reports whether the broker refused the credentials.
func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || strings.Contains(strings.ToLower(fmt.Sprint(err)), "authorization violation")
}
