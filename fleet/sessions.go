package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SessionsBucket keeps the dashboard's sessions, so that a restart of the
// web server signs nobody out and several web servers share them. A key
// is the sha256 of the session cookie, never the cookie itself; the
// bucket's age limit drops a session when it expires.
const SessionsBucket = "thinfleet_sessions"

// SessionLifetime is how long a dashboard session lasts.
const SessionLifetime = 12 * time.Hour

func (s *Store) openSessions(ctx context.Context, replicas int) error {
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: SessionsBucket, Description: "thinfleet dashboard sessions, by the sha256 of their cookie",
		History: 1, TTL: SessionLifetime, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return fmt.Errorf("open sessions bucket: %w", err)
	}
	s.sessions = kv
	return nil
}

func sessionKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

// CreateSession records a new session for cookie.
func (s *Store) CreateSession(ctx context.Context, cookie string) error {
	exp := time.Now().Add(SessionLifetime).UTC().Format(time.RFC3339)
	if _, err := s.sessions.Create(ctx, sessionKey(cookie), []byte(exp)); err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// SessionValid reports whether cookie is a live session.
func (s *Store) SessionValid(ctx context.Context, cookie string) (bool, error) {
	if cookie == "" || len(cookie) > 256 {
		return false, nil
	}
	e, err := s.sessions.Get(ctx, sessionKey(cookie))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read session: %w", err)
	}
	exp, err := time.Parse(time.RFC3339, string(e.Value()))
	return err == nil && time.Now().Before(exp), nil
}

// EndSession ends cookie's session, on every web server.
func (s *Store) EndSession(ctx context.Context, cookie string) error {
	if err := s.sessions.Purge(ctx, sessionKey(cookie)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}
