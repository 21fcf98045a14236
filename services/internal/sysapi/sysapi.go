// Package sysapi asks the broker's system account what the services need
// of it: the open connections of an account on every server of a cluster,
// and to close one. These are nats-server's subjects and messages
// (server.ConnzOptions, server.Connz, server.KickClientReq).
package sysapi

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

const (
	connzPing   = "$SYS.REQ.SERVER.PING.CONNZ"
	connzServer = "$SYS.REQ.SERVER.%s.CONNZ"
	kickServer  = "$SYS.REQ.SERVER.%s.KICK"
	page        = 500
	// firstWait bounds the wait for the first server's answer, quiet the
	// wait for more servers' answers after the last one.
	firstWait = 3 * time.Second
	quiet     = 250 * time.Millisecond
	// maxAnswer bounds one answer's size.
	maxAnswer = 8 << 20
)

// Conn is one open connection.
type Conn struct {
	Server string // the server's id
	CID    uint64 // the connection's id on that server
	Name   string // the name the client gave
	// JWT is the user JWT the broker let the connection in with.
	JWT   string
	Start time.Time
}

// Key names the connection as the broker's connect and disconnect events
// do: server id and connection id.
func (c Conn) Key() string { return fmt.Sprintf("%s/%d", c.Server, c.CID) }

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
			CID   uint64    `json:"cid"`
			Name  string    `json:"name"`
			JWT   string    `json:"jwt"`
			Start time.Time `json:"start"`
		} `json:"connections"`
	} `json:"data"`
	Error *struct {
		Description string `json:"description"`
	} `json:"error"`
}

// Connections lists account's open connections on every server that
// answers: all of a cluster's, each asked again for the further pages of
// its list.
func Connections(ctx context.Context, sys *nats.Conn, account string) ([]Conn, error) {
	inbox := sys.NewRespInbox()
	sub, err := sys.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, _ := json.Marshal(connzRequest{Account: account, Auth: true, Limit: page})
	if err := sys.PublishRequest(connzPing, inbox, req); err != nil {
		return nil, err
	}
	var conns []Conn
	wait := firstWait
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
		wait = quiet
		if conns, err = serverConns(ctx, sys, account, conns, m.Data); err != nil {
			return nil, err
		}
	}
}

// serverConns adds one server's answer, and the further pages of its
// list, to conns.
func serverConns(ctx context.Context, sys *nats.Conn, account string, conns []Conn, data []byte) ([]Conn, error) {
	for offset := 0; ; {
		var r connzReply
		if len(data) > maxAnswer {
			return nil, fmt.Errorf("connection list of %d bytes", len(data))
		}
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("decode connection list: %w", err)
		}
		if r.Error != nil {
			return nil, fmt.Errorf("connection list: %s", r.Error.Description)
		}
		for _, c := range r.Data.Conns {
			conns = append(conns, Conn{Server: r.Server.ID, CID: c.CID, Name: c.Name, JWT: c.JWT, Start: c.Start})
		}
		offset += len(r.Data.Conns)
		if len(r.Data.Conns) == 0 || offset >= r.Data.Total || r.Server.ID == "" {
			return conns, nil
		}
		req, _ := json.Marshal(connzRequest{Account: account, Auth: true, Offset: offset, Limit: page})
		rctx, cancel := context.WithTimeout(ctx, firstWait)
		m, err := sys.RequestWithContext(rctx, fmt.Sprintf(connzServer, r.Server.ID), req)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("connection list of server %s from %d: %w", r.Server.ID, offset, err)
		}
		data = m.Data
	}
}

// Kick closes connection c.
func Kick(ctx context.Context, sys *nats.Conn, c Conn) error {
	req, _ := json.Marshal(struct {
		CID uint64 `json:"cid"`
	}{c.CID})
	rctx, cancel := context.WithTimeout(ctx, firstWait)
	defer cancel()
	m, err := sys.RequestWithContext(rctx, fmt.Sprintf(kickServer, c.Server), req)
	if err != nil {
		return fmt.Errorf("close connection %s: %w", c.Key(), err)
	}
	var r connzReply
	if json.Unmarshal(m.Data, &r) == nil && r.Error != nil {
		return fmt.Errorf("close connection %s: %s", c.Key(), r.Error.Description)
	}
	return nil
}
