package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/store"
)

// sessionsBucket keeps the dashboard's sessions, so that a restart of the
// web server signs nobody out and several web servers share them. A key
// is the sha256 of the session cookie, never the cookie itself; the
// bucket's age limit drops a session when it expires.
const sessionsBucket = "thinfleet_sessions"

// sessionLifetime is how long a dashboard session lasts.
const sessionLifetime = 12 * time.Hour

// sessions are the dashboard's sessions, in a bucket of the store's
// JetStream. The bucket is opened at the first use, with that request's
// context, and again at the next use if opening failed.
type sessions struct {
	store *store.Store
	mu    sync.Mutex
	kv    jetstream.KeyValue
}

func (ss *sessions) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.kv != nil {
		return ss.kv, nil
	}
	kv, err := ss.store.OpenBucket(ctx, jetstream.KeyValueConfig{
		Bucket: sessionsBucket, Description: "thinfleet dashboard sessions, by the sha256 of their cookie",
		History: 1, TTL: sessionLifetime,
	})
	if err != nil {
		return nil, err
	}
	ss.kv = kv
	return kv, nil
}

func sessionKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

// create records a new session for cookie.
func (ss *sessions) create(ctx context.Context, cookie string) error {
	kv, err := ss.bucket(ctx)
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	exp := time.Now().Add(sessionLifetime).UTC().Format(time.RFC3339)
	if _, err := kv.Create(ctx, sessionKey(cookie), []byte(exp)); err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// valid reports whether cookie is a live session.
func (ss *sessions) valid(ctx context.Context, cookie string) (bool, error) {
	if cookie == "" || len(cookie) > 256 {
		return false, nil
	}
	kv, err := ss.bucket(ctx)
	if err != nil {
		return false, fmt.Errorf("read session: %w", err)
	}
	e, err := kv.Get(ctx, sessionKey(cookie))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read session: %w", err)
	}
	exp, err := time.Parse(time.RFC3339, string(e.Value()))
	return err == nil && time.Now().Before(exp), nil
}

// end ends cookie's session, on every web server.
func (ss *sessions) end(ctx context.Context, cookie string) error {
	kv, err := ss.bucket(ctx)
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	if err := kv.Purge(ctx, sessionKey(cookie)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// ready reports whether the sessions bucket answers: /readyz asks it.
func (ss *sessions) ready(ctx context.Context) error {
	kv, err := ss.bucket(ctx)
	if err == nil {
		_, err = kv.Status(ctx)
	}
	if err != nil {
		return fmt.Errorf("sessions bucket: %w", err)
	}
	return nil
}
