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

// The broker's connection list: every server of a cluster answers the
// ping; one server is asked again for the further pages of its list.
// These are nats-server's subjects (server.ConnzOptions, server.Connz).
const (
	connzPing   = "$SYS.REQ.SERVER.PING.CONNZ"
	connzServer = "$SYS.REQ.SERVER.%s.CONNZ"
	connzPage   = 500
	// connzFirst bounds the wait for the first answer, connzQuiet the
	// wait for more servers' answers after the last one.
	connzFirst = 3 * time.Second
	connzQuiet = 250 * time.Millisecond
)

type connzRequest struct {
	Account string `json:"acc"`
	Auth    bool   `json:"auth"` // with each connection's JWT
	Offset  int    `json:"offset"`
	Limit   int    `json:"limit"`
}

type connzReply struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Data struct {
		Total int `json:"total"`
		Conns []struct {
			CID  uint64 `json:"cid"`
			Name string `json:"name"`
			JWT  string `json:"jwt"`
		} `json:"connections"`
	} `json:"data"`
	Error *struct {
		Description string `json:"description"`
	} `json:"error"`
}

// connections asks the broker (every server of a cluster) which devices
// have a connection open now: device id to connection, as broker events
// name them.
func (s *Service) connections(ctx context.Context) (map[string]string, error) {
	inbox := s.sys.NewRespInbox()
	sub, err := s.sys.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, _ := json.Marshal(connzRequest{Account: s.account, Auth: true, Limit: connzPage})
	if err := s.sys.PublishRequest(connzPing, inbox, req); err != nil {
		return nil, err
	}
	conns := map[string]string{}
	wait := connzFirst
	for answered := 0; ; answered++ {
		mctx, cancel := context.WithTimeout(ctx, wait)
		m, err := sub.NextMsgWithContext(mctx)
		cancel()
		if err != nil {
			if answered > 0 && ctx.Err() == nil {
				return conns, nil
			}
			return nil, fmt.Errorf("no broker answered %s: %w", connzPing, err)
		}
		wait = connzQuiet
		if err := s.addConns(ctx, conns, m.Data); err != nil {
			return nil, err
		}
	}
}

// addConns adds one server's answer, and the further pages of its list.
func (s *Service) addConns(ctx context.Context, conns map[string]string, data []byte) error {
	for offset := 0; ; {
		var r connzReply
		if len(data) > 8<<20 {
			return fmt.Errorf("connection list of %d bytes", len(data))
		}
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("decode connection list: %w", err)
		}
		if r.Error != nil {
			return fmt.Errorf("connection list: %s", r.Error.Description)
		}
		for _, c := range r.Data.Conns {
			if id, ok := deviceOf(c.Name, c.JWT); ok {
				conns[id] = fmt.Sprintf("%s/%d", r.Server.ID, c.CID)
			}
		}
		offset += len(r.Data.Conns)
		if len(r.Data.Conns) == 0 || offset >= r.Data.Total || r.Server.ID == "" {
			return nil
		}
		req, _ := json.Marshal(connzRequest{Account: s.account, Auth: true, Offset: offset, Limit: connzPage})
		rctx, cancel := context.WithTimeout(ctx, connzFirst)
		m, err := s.sys.RequestWithContext(rctx, fmt.Sprintf(connzServer, r.Server.ID), req)
		cancel()
		if err != nil {
			return fmt.Errorf("connection list of server %s from %d: %w", r.Server.ID, offset, err)
		}
		data = m.Data
	}
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
