package presence

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/retry"
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
		var err error
		if name, err = jwtName(userJWT); err != nil {
			return "", false
		}
	}
	return name, wire.ValidateID(name) == nil
}

// jwtName is the name in a user JWT that the broker has verified: it
// comes in the broker's own events and answers, in the system account,
// so its signature is not checked again (that is most of the cost of a
// thousand agents disconnecting at once).
func jwtName(token string) (string, error) {
	_, rest, ok := strings.Cut(token, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return "", errors.New("not a JWT")
	}
	data, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return "", fmt.Errorf("JWT payload: %w", err)
	}
	var claims struct {
		Name string `json:"name"`
		NATS struct {
			Type string `json:"type"`
		} `json:"nats"`
	}
	if err := json.Unmarshal(data, &claims); err != nil {
		return "", fmt.Errorf("JWT payload: %w", err)
	}
	if claims.NATS.Type != string(jwt.UserClaim) {
		return "", fmt.Errorf("JWT of a %q, not a user", claims.NATS.Type)
	}
	return claims.Name, nil
}

// reconciler asks the broker for its connections at start and after every
// reconnect of the system connection (broker events sent while it was
// away are lost), and takes the list into the state. It returns when
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
		retry.Do(ctx, retry.Backoff{Pause: time.Second, Max: 10 * time.Second}, func(attempt int) error {
			asked := time.Now()
			conns, err := s.connections(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("ask the broker for its connections, will retry", "attempt", attempt, "err", err)
				}
				return err
			}
			s.snapshot(conns, asked)
			return nil
		})
	}
}
