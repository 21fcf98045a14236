package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/wire"
)

// input is one message handed from a NATS callback to Run's goroutine.
type input struct {
	kind     inputKind
	device   string
	at       time.Time // when it arrived
	interval time.Duration
	conn     string // server id and client id, for broker events
	reason   string
	// conns are the devices' open connections, for a snapshot taken at.
	conns map[string]string
}

type inputKind int

const (
	inHeartbeat inputKind = iota
	inConnect
	inDisconnect
	inSnapshot // the broker's list of connections
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
// error.
func (s *Service) subscribe(ctx context.Context) ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	if s.sys != nil {
		for _, e := range []struct {
			subject string
			kind    inputKind
		}{{connectSubject, inConnect}, {disconnectSubject, inDisconnect}} {
			subject := fmt.Sprintf(e.subject, s.account)
			sub, err := s.sys.Subscribe(subject, func(m *nats.Msg) { s.brokerEvent(ctx, e.kind, m) })
			if err != nil {
				return subs, fmt.Errorf("presence: subscribe to %s: %w", subject, err)
			}
			subs = append(subs, sub)
		}
		// A connection still connecting subscribes when it is up.
		if err := s.sys.FlushTimeout(5 * time.Second); err != nil {
			s.log.Warn("broker events not confirmed yet", "err", err)
		}
	}
	sub, err := s.nc.Subscribe(wire.AllHeartbeats, func(m *nats.Msg) { s.heartbeat(ctx, m) })
	if err != nil {
		return subs, fmt.Errorf("presence: subscribe to heartbeats: %w", err)
	}
	return append(subs, sub), nil
}

// heartbeat validates a heartbeat and hands it on.
func (s *Service) heartbeat(ctx context.Context, m *nats.Msg) {
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
	s.send(ctx, input{kind: inHeartbeat, device: id, at: at, interval: hb.Interval()})
}

// brokerEvent hands on a connect or disconnect event of a connection
// named with a device id; other connections (services, tools) are not
// devices and are ignored.
func (s *Service) brokerEvent(ctx context.Context, kind inputKind, m *nats.Msg) {
	at := time.Now()
	label := kindConnect
	if kind == inDisconnect {
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
			if _, err := jwt.DecodeUserClaims(e.Client.JWT); err != nil {
				s.metrics.Dropped(label, "invalid")
			}
		}
		return
	}
	s.send(ctx, input{
		kind: kind, device: device, at: at, reason: truncate(e.Reason, 100),
		conn: fmt.Sprintf("%s/%d", e.Server.ID, e.Client.ID),
	})
}

func (s *Service) send(ctx context.Context, in input) {
	select {
	case s.in <- in:
	case <-ctx.Done():
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
