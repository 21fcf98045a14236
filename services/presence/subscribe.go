package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/wire"
)

// The kinds of broker events presence takes.
type eventKind int

const (
	evConnect eventKind = iota
	evDisconnect
)

// The broker's connect and disconnect events of an account, in the
// system account (nats-server's server.ConnectEventMsg and
// DisconnectEventMsg). These are the broker's subjects, not thinfleet's.
const (
	connectSubject    = "$SYS.ACCOUNT.%s.CONNECT"
	disconnectSubject = "$SYS.ACCOUNT.%s.DISCONNECT"
)

// Metric kinds for dropped broker events.
const (
	kindConnect    = "sys.connect"
	kindDisconnect = "sys.disconnect"
)

// clientEvent is the part of a broker connect or disconnect event that
// presence reads.
type clientEvent struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Client struct {
		ID   uint64 `json:"id"`
		Name string `json:"name"`
		// JWT is the user JWT the connection logged in with. Its name is,
		// for an agent, the device id the broker authenticated, which the
		// connection name merely claims.
		JWT string `json:"jwt"`
	} `json:"client"`
	Reason string `json:"reason"`
}

// subscribe subscribes to the broker's events, if it has a system
// connection, then to heartbeats: once a heartbeat is in, so are the
// events of its connection. It returns the subscriptions made, even on
// error, and the heartbeats' own. The callbacks take what they get into
// the state and return: none waits for the store.
func (s *Service) subscribe(ctx context.Context) (subs []*nats.Subscription, heartbeats *nats.Subscription, err error) {
	if s.sys != nil {
		for _, e := range []struct {
			subject string
			kind    eventKind
		}{{connectSubject, evConnect}, {disconnectSubject, evDisconnect}} {
			subject := fmt.Sprintf(e.subject, s.account)
			sub, err := s.sys.Subscribe(subject, func(m *nats.Msg) { s.brokerEvent(ctx, e.kind, m) })
			if err != nil {
				return subs, nil, fmt.Errorf("presence: subscribe to %s: %w", subject, err)
			}
			subs = append(subs, sub)
		}
		// A connection still connecting subscribes when it is up.
		if err := s.sys.FlushTimeout(5 * time.Second); err != nil {
			s.log.Warn("broker events not confirmed yet", "err", err)
		}
	}
	sub, err := s.nc.Subscribe(wire.AllHeartbeats, func(m *nats.Msg) {
		defer s.handled.Add(1)
		if ctx.Err() == nil {
			s.heartbeat(m)
		}
	})
	if err != nil {
		return subs, nil, fmt.Errorf("presence: subscribe to heartbeats: %w", err)
	}
	return append(subs, sub), sub, nil
}

// heartbeat validates a heartbeat and takes it, as arrived now.
func (s *Service) heartbeat(m *nats.Msg) {
	at := time.Now()
	kind, id, err := wire.ParseSubject(m.Subject)
	if err != nil || kind != wire.KindHeartbeat {
		s.log.Warn("dropped heartbeat", "subject", truncate(m.Subject, 100), "err", err)
		s.metrics.Dropped(string(wire.KindHeartbeat), "bad_subject")
		return
	}
	if ok, warn := s.limiter.Allow(id); !ok {
		if warn {
			s.log.Warn("device over its heartbeat rate; dropping its heartbeats", "device", id)
		}
		s.metrics.Dropped(string(kind), "rate_limited")
		return
	}
	hb, err := wire.Decode[wire.Heartbeat](m.Data)
	if err != nil {
		s.log.Warn("dropped heartbeat", "device", id, "err", err)
		s.metrics.Dropped(string(kind), wire.DropReason(err))
		return
	}
	s.takeHeartbeat(id, hb.Interval(), at)
}

// brokerEvent hands on a connect or disconnect event of a connection
// named with a device id; other connections (services, tools) are not
// devices and are ignored.
func (s *Service) brokerEvent(ctx context.Context, kind eventKind, m *nats.Msg) {
	at := time.Now()
	if ctx.Err() != nil {
		return
	}
	label := kindConnect
	if kind == evDisconnect {
		label = kindDisconnect
	}
	if len(m.Data) > 1<<20 {
		s.log.Warn("dropped broker event", "subject", m.Subject, "err", "too large")
		s.metrics.Dropped(label, "too_large")
		return
	}
	var e clientEvent
	if err := json.Unmarshal(m.Data, &e); err != nil {
		s.log.Warn("dropped broker event", "subject", m.Subject, "err", err)
		s.metrics.Dropped(label, "bad_json")
		return
	}
	// The event comes from the system account: its JWT is the broker's
	// word.
	device, ok := deviceOf(e.Client.Name, e.Client.JWT)
	if !ok {
		if e.Client.JWT != "" {
			if _, err := jwtName(e.Client.JWT); err != nil {
				s.metrics.Dropped(label, "invalid")
			}
		}
		return
	}
	conn := fmt.Sprintf("%s/%d", e.Server.ID, e.Client.ID)
	if kind == evConnect {
		s.connected(device, conn, at)
	} else {
		s.disconnected(device, conn, truncate(e.Reason, 100), at)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
