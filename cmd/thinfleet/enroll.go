package main

import (
	"context"
	"log/slog"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/services/enroll"
)

// startEnroll builds the enrollment service beside the broker b, which
// holds the key agent credentials are signed with.
func startEnroll(ctx context.Context, b *broker.Broker, d dialer, o *options, log *slog.Logger) (func(context.Context) error, error) {
	nc, store, err := openStore(ctx, d, "enroll")
	if err != nil {
		return nil, err
	}
	signer, account := b.AgentSigner()
	s, err := enroll.New(enroll.Options{
		Log: log, Store: store, Conn: nc, Revoker: b, Approve: o.approveDevices,
		Issue: func(id, userKey string) (string, error) { return broker.AgentJWT(signer, account, id, userKey) },
	})
	if err != nil {
		return nil, err
	}
	return s.Run, nil
}
