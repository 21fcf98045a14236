package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// Revoker revokes agents at any broker of thinfleet's trust, embedded or
// a stock nats-server, through its system account: it reads the
// application account as the broker has it now, adds the revocation,
// signs it with the operator key (derived from the service token) and
// sends it as a claims update, which the resolvers keep on disk and share
// across a cluster.
type Revoker struct {
	keys keys
	sys  *nats.Conn
}

// NewRevoker returns a Revoker for serviceToken's trust that talks through
// sys, a connection of the system account.
func NewRevoker(serviceToken string, sys *nats.Conn) (*Revoker, error) {
	k, err := deriveKeys(serviceToken)
	if err != nil {
		return nil, fmt.Errorf("revoker: %w", err)
	}
	return &Revoker{keys: k, sys: sys}, nil
}

// Revoke refuses the agent user with public key userKey from now on: the
// broker closes its connections at once and turns it away afterwards.
func (r *Revoker) Revoke(ctx context.Context, userKey string) error {
	account := pub(r.keys.app)
	msg, err := r.sys.RequestWithContext(ctx, fmt.Sprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP", account), nil)
	if err != nil {
		return fmt.Errorf("revoke: look up the account: %w", err)
	}
	current, err := jwt.DecodeAccountClaims(string(msg.Data))
	if err != nil || current.Issuer != pub(r.keys.operator) {
		return fmt.Errorf("revoke: the broker's account is not ours: %v", err)
	}
	revocations := current.Revocations
	if revocations == nil {
		revocations = jwt.RevocationList{}
	}
	revocations.Revoke(userKey, time.Now().Add(time.Second))
	claims, err := appAccountJWT(r.keys, revocations)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	msg, err = r.sys.RequestWithContext(ctx, "$SYS.REQ.CLAIMS.UPDATE", []byte(claims))
	if err != nil {
		return fmt.Errorf("revoke: update account: %w", err)
	}
	var resp struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if json.Unmarshal(msg.Data, &resp) == nil && resp.Error != nil {
		return fmt.Errorf("revoke: update account: %s", resp.Error.Description)
	}
	return nil
}

// Revoke revokes userKey at this broker (see Revoker).
func (b *Broker) Revoke(ctx context.Context, userKey string) error {
	sys, err := b.ConnectSystem("thinfleet-revoke")
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	defer sys.Close()
	return (&Revoker{keys: b.keys, sys: sys}).Revoke(ctx, userKey)
}

// storedRevocations are the revocations of the application account as the
// resolver last stored it, so that a restart keeps every revoked agent out.
func storedRevocations(resolverDir string, k keys) jwt.RevocationList {
	data, err := os.ReadFile(filepath.Join(resolverDir, pub(k.app)+".jwt"))
	if err != nil {
		return nil
	}
	ac, err := jwt.DecodeAccountClaims(string(data))
	if err != nil || ac.Issuer != pub(k.operator) {
		return nil
	}
	return ac.Revocations
}
