package presence

import (
	"context"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/services/internal/sysapi"
	"github.com/thinfleet/thinfleet/wire"
)

// connections asks the broker (every server of a cluster) which devices
// have a connection open now: device id to connection, as broker events
// name them.
func (s *Service) connections(ctx context.Context) (map[string]string, error) {
	list, err := sysapi.Connections(ctx, s.sys, s.account)
	if err != nil {
		return nil, err
	}
	conns := make(map[string]string, len(list))
	for _, c := range list {
		if id, ok := deviceOf(c.Name, c.JWT); ok {
			conns[id] = c.Key()
		}
	}
	return conns, nil
}

// deviceOf is the device a connection is, if any: for an agent, the name
// in the user JWT the broker checked when it let the connection in (the
// connection name merely claims one), else the connection name.
func deviceOf(name, userJWT string) (string, bool) {
	if userJWT != "" {
		uc, err := jwt.DecodeUserClaims(userJWT)
		if err != nil {
			return "", false
		}
		name = uc.Name
	}
	return name, wire.ValidateID(name) == nil
}

// reconciler asks the broker for its connections at start and after every
// reconnect of the system connection (broker events sent while it was
// away are lost), and hands the list to Run's goroutine. It returns when
// ctx ends.
func (s *Service) reconciler(ctx context.Context) {
	kick := make(chan struct{}, 1)
	kick <- struct{}{}
	s.sys.SetReconnectHandler(func(*nats.Conn) {
		select {
		case kick <- struct{}{}:
		default:
		}
	})
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		for attempt := 1; ; attempt++ {
			asked := time.Now()
			conns, err := s.connections(ctx)
			if err == nil {
				s.send(ctx, input{kind: inSnapshot, at: asked, conns: conns})
				break
			}
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("ask the broker for its connections, will retry", "attempt", attempt, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(time.Duration(attempt)*time.Second, 10*time.Second)):
			}
		}
	}
}
