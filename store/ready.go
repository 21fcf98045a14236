package store

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
)

// probeSubject is where Ready writes (and at once deletes) a message in
// the agent stream, to prove it can.
const probeSubject = IntakePrefix + "probe"

// Ready reports whether the store can serve: its connection is up, every
// bucket and stream answers, and the agent stream takes a write. Each check is a JetStream API request,
// so on a cluster it also proves that the streams have a leader. It is
// what /readyz asks.
func (s *Store) Ready(ctx context.Context) error {
	if st := s.js.Conn().Status(); st != nats.CONNECTED {
		return fmt.Errorf("broker connection is %s", st)
	}
	if _, err := s.devices.Status(ctx); err != nil {
		return fmt.Errorf("devices bucket: %w", err)
	}
	if _, err := s.catalog.Status(ctx); err != nil {
		return fmt.Errorf("catalog bucket: %w", err)
	}
	if _, err := s.enrollments.Status(ctx); err != nil {
		return fmt.Errorf("enrollments bucket: %w", err)
	}
	if _, err := s.agent.Info(ctx); err != nil {
		return fmt.Errorf("stream %s: %w", AgentStream, err)
	}
	// A store that cannot write is not ready: a stream whose disk filled
	// up answers Info but fails every write.
	ack, err := s.js.Publish(ctx, probeSubject, nil)
	if err != nil {
		return fmt.Errorf("stream %s: cannot write: %w", AgentStream, err)
	}
	if err := s.agent.DeleteMsg(ctx, ack.Sequence); err != nil {
		return fmt.Errorf("stream %s: cannot delete: %w", AgentStream, err)
	}
	if _, err := s.history.Info(ctx); err != nil {
		return fmt.Errorf("stream %s: %w", HistoryStream, err)
	}
	return nil
}
