package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/fleet"
)

// AuditStream keeps every operator action, append-only.
const (
	AuditStream  = "THINFLEET_AUDIT"
	auditSubject = "thinfleet.audit"
)

func (s *Store) openAudit(ctx context.Context, replicas int) error {
	var err error
	s.audit, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: AuditStream, Description: "thinfleet operator actions, append-only",
		Subjects: []string{auditSubject}, Storage: jetstream.FileStorage, Replicas: replicas,
		DenyDelete: true, DenyPurge: true,
	})
	if err != nil {
		return fmt.Errorf("open audit stream: %w", err)
	}
	return nil
}

// AppendAudit appends e to the audit log, stamped now when it has no time,
// and returns once it is stored.
func (s *Store) AppendAudit(ctx context.Context, e fleet.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time, e.Seq = e.Time.UTC(), 0
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit entry: %w", err)
	}
	if _, err := s.js.Publish(ctx, auditSubject, data); err != nil {
		return fmt.Errorf("append audit entry: %w", err)
	}
	return nil
}

// AuditPage returns up to n audit entries older than the one with
// sequence before (0: the newest), newest first, and whether there are
// older ones.
func (s *Store) AuditPage(ctx context.Context, before uint64, n int) ([]fleet.AuditEntry, bool, error) {
	info, err := s.audit.Info(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("read audit log: %w", err)
	}
	first, end := info.State.FirstSeq, info.State.LastSeq
	if before != 0 && before <= end {
		end = before - 1
	}
	if n <= 0 || info.State.Msgs == 0 || end < first || end == 0 {
		return nil, false, nil
	}
	start := first
	if end-first+1 > uint64(n) {
		start = end - uint64(n) + 1
	}
	cons, err := s.audit.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return nil, false, fmt.Errorf("read audit log: %w", err)
	}
	var out []fleet.AuditEntry
	batch, err := cons.Fetch(int(end-start+1), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		return nil, false, fmt.Errorf("read audit log: %w", err)
	}
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil || meta.Sequence.Stream > end {
			continue
		}
		var e fleet.AuditEntry
		if json.Unmarshal(m.Data(), &e) != nil {
			continue
		}
		e.Seq = meta.Sequence.Stream
		out = append(out, e)
	}
	if err := batch.Error(); err != nil {
		return nil, false, fmt.Errorf("read audit log: %w", err)
	}
	slices.Reverse(out)
	return out, start > first, nil
}
