package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
)

// Revoke refuses the agent user with public key userKey from now on: the
// broker closes its connections at once and turns it away afterwards. The
// revocation is signed into the application account and sent through the
// system account's claims update, so it reaches every server of a cluster
// and is kept on disk by their resolvers.
func (b *Broker) Revoke(ctx context.Context, userKey string) error {
	b.mu.Lock()
	if b.revocations == nil {
		b.revocations = jwt.RevocationList{}
	}
	b.revocations.Revoke(userKey, time.Now().Add(time.Second))
	claims, err := appAccountJWT(b.keys, b.revocations)
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	nc, err := b.ConnectSystem("thinfleet-revoke")
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	defer nc.Close()
	msg, err := nc.RequestWithContext(ctx, "$SYS.REQ.CLAIMS.UPDATE", []byte(claims))
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
