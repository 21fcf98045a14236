package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/metrics"
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

// AgentMessageRate and AgentMessageBurst bound what one device may send
// through the agent stream: far above what an agent sends (a few progress
// statuses a second during an install), far below a flood.
const (
	AgentMessageRate  = 20
	AgentMessageBurst = 100
)

// ConsumeAgent delivers the agent messages on subjects to handle, through a
// durable consumer called name, so that a service that was down gets every
// message it missed. A message handle fails with a Permanent error (or whose
// subject is not a device subject) is logged, counted and dropped; any
// other error redelivers it after a pause. A device sending more than
// AgentMessageRate messages a second has the excess dropped and counted, so
// a flooding agent does not hold up the others. It returns when ctx ends.
func (s *Store) ConsumeAgent(ctx context.Context, log *slog.Logger, name string, subjects []string, handle func(context.Context, AgentMessage) error) error {
	cfg := jetstream.ConsumerConfig{
		Durable: name, FilterSubjects: subjects,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1000,
	}
	// On a cluster that is electing leaders or starting up, creating the
	// consumer can time out: the service waits and tries again rather than
	// giving up.
	var cons jetstream.Consumer
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := s.agent.CreateOrUpdateConsumer(cctx, cfg)
		cancel()
		if err == nil {
			cons = c
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("create consumer, will retry", "service", name, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(time.Duration(attempt)*time.Second, 10*time.Second)):
		}
	}
	limiter := NewDeviceLimiter(AgentMessageRate, AgentMessageBurst)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		meta, err := m.Metadata()
		if err != nil {
			_ = m.Term()
			return
		}
		kind, id, err := wire.ParseSubject(m.Subject())
		if err != nil {
			log.Warn("dropped message", "service", name, "subject", m.Subject(), "err", err)
			metrics.Dropped(string(kind), "bad_subject")
			_ = m.Term()
			return
		}
		if ok, warn := limiter.Allow(id); !ok {
			if warn {
				log.Warn("device over its message rate; dropping its messages", "service", name, "device", id, "kind", kind)
			}
			metrics.Dropped(string(kind), "rate_limited")
			_ = m.Term()
			return
		}
		msg := AgentMessage{
			Kind: kind, Device: id, Data: m.Data(),
			ID: fmt.Sprintf("%s-%d", AgentStream, meta.Sequence.Stream), Time: meta.Timestamp.UTC(),
		}
		err = handle(ctx, msg)
		var perm *permanentError
		switch {
		case err == nil:
			_ = m.Ack()
		case errors.As(err, &perm):
			log.Warn("dropped message", "service", name, "device", id, "kind", kind, "err", err)
			metrics.Dropped(string(kind), wire.DropReason(perm.err))
			_ = m.Term()
		default:
			log.Error("handle message, will retry", "service", name, "device", id, "kind", kind, "err", err)
			_ = m.NakWithDelay(time.Second)
		}
	})
	if err != nil {
		return fmt.Errorf("%s: consume: %w", name, err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}
