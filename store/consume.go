package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/retry"
	"github.com/thinfleet/thinfleet/wire"
)

// AgentMessage is one message an agent published, as a service receives
// it. Device comes from the subject, which the broker lets only that agent
// publish on; it is never read from the payload.
type AgentMessage struct {
	Kind   wire.Kind
	Device string
	Data   []byte
	// ID is unique per message and stable across redeliveries.
	ID   string
	Time time.Time
}

// Permanent marks an error that retrying will not cure: the message is
// dropped and counted instead of redelivered.
func Permanent(err error) error { return &permanentError{err} }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IntakePrefix is put before an agent's subject when the intake stores
// its message in the agent stream. The stream never captures a subject an
// agent may publish on: JetStream answers every publish it stores on the
// publish's reply subject, and an agent chooses its reply subject freely.
// Only the intake, which checks that the reply is the agent's own inbox,
// publishes into the stream.
const IntakePrefix = "thinfleet.in."

// StoredSubject is the subject under which the agent stream keeps a
// message an agent sent on subject.
func StoredSubject(subject string) string { return IntakePrefix + subject }

// StoredSubjects are the agent stream's subjects.
func StoredSubjects() []string {
	out := make([]string, len(wire.AgentStreamSubjects))
	for i, s := range wire.AgentStreamSubjects {
		out[i] = StoredSubject(s)
	}
	return out
}

// ConsumeAgent delivers the agent messages on subjects to handle, through a
// durable consumer called name, so that a service that was down gets every
// message it missed. A message handle fails with a Permanent error (or whose
// subject is not a device subject) is logged, counted in met and dropped; any
// other error redelivers it after a pause. Subjects are agent subjects
// (wire.AllStatuses, …). Nothing acknowledged is dropped for pacing here:
// a device's rate is limited by the intake, before its message is
// acknowledged. It returns when ctx ends.
func (s *Store) ConsumeAgent(ctx context.Context, log *slog.Logger, met *metrics.Metrics, name string, subjects []string, handle func(context.Context, AgentMessage) error) error {
	return s.ConsumeAgentAsync(ctx, log, met, name, subjects, func(ctx context.Context, m AgentMessage, done func(error)) {
		done(handle(ctx, m))
	})
}

// ConsumeAgentAsync is ConsumeAgent for a handler that may finish a
// message later: handle must call done exactly once, from any goroutine,
// with what ConsumeAgent's handler would return, and the message is
// acknowledged (or dropped, or redelivered) then. Messages keep coming
// meanwhile, up to the consumer's bound of unacknowledged ones (1000).
func (s *Store) ConsumeAgentAsync(ctx context.Context, log *slog.Logger, met *metrics.Metrics, name string, subjects []string, handle func(ctx context.Context, m AgentMessage, done func(error))) error {
	filter := make([]string, len(subjects))
	for i, subj := range subjects {
		filter[i] = StoredSubject(subj)
	}
	cfg := jetstream.ConsumerConfig{
		Durable: name, FilterSubjects: filter,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1000,
	}
	// On a cluster that is electing leaders or starting up, creating the
	// consumer can time out: the service waits and tries again rather than
	// giving up.
	var cons jetstream.Consumer
	err := retry.Do(ctx, retry.Backoff{Pause: time.Second, Max: 10 * time.Second}, func(attempt int) error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := s.agent.CreateOrUpdateConsumer(cctx, cfg)
		if err != nil && ctx.Err() == nil {
			log.Warn("create consumer, will retry", "service", name, "attempt", attempt, "err", err)
		}
		cons = c
		return err
	})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: create consumer: %w", name, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		meta, err := m.Metadata()
		if err != nil {
			_ = m.Term()
			return
		}
		subject, stored := strings.CutPrefix(m.Subject(), IntakePrefix)
		kind, id, err := wire.ParseSubject(subject)
		if err == nil && !stored {
			err = errors.New("not stored by the intake")
		}
		if err != nil {
			log.Warn("dropped message", "service", name, "subject", m.Subject(), "err", err)
			met.Dropped(string(kind), "bad_subject")
			_ = m.Term()
			return
		}
		msg := AgentMessage{
			Kind: kind, Device: id, Data: m.Data(),
			ID: fmt.Sprintf("%s-%d", AgentStream, meta.Sequence.Stream), Time: meta.Timestamp.UTC(),
		}
		handle(ctx, msg, func(err error) {
			var perm *permanentError
			switch {
			case err == nil:
				_ = m.Ack()
			case errors.As(err, &perm):
				log.Warn("dropped message", "service", name, "device", id, "kind", kind, "err", err)
				met.Dropped(string(kind), wire.DropReason(perm.err))
				_ = m.Term()
			default:
				log.Error("handle message, will retry", "service", name, "device", id, "kind", kind, "err", err)
				_ = m.NakWithDelay(time.Second)
			}
		})
	})
	if err != nil {
		return fmt.Errorf("%s: consume: %w", name, err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}
