// Package intake is the one door from the agents into the agent stream.
//
// An agent publishes its reports (hardware, installed version, install
// statuses) as JetStream publishes: a request whose reply subject gets the
// stream's acknowledgement. JetStream writes that acknowledgement on
// whatever reply subject the publish carries, with the application
// account's rights, and the broker cannot restrict an agent's reply
// subjects. So the stream captures none of the subjects an agent may
// publish on: the intake takes each report, and stores it under
// store.StoredSubject only if
//
//   - its reply subject, if any, is under the sender's own inbox
//     (wire.AgentInboxPrefix): anything else is refused and counted, so no
//     publish of an agent causes a write or a delivery outside its own
//     subjects and inbox;
//   - the sender is within its message rate: over it, the agent gets an
//     error instead of an acknowledgement and retries later, so pacing
//     happens before a message is acknowledged and never drops one that
//     was;
//   - and only with the one header the stream needs, the agent's message
//     id, prefixed with its device id so that no device can make the
//     stream drop another's message as a duplicate.
//
// The stream's acknowledgement goes straight from JetStream to the
// agent's inbox, so the intake waits for nothing and keeps each device's
// messages in order. Several intakes (one per server node) share the work
// through a queue group.
package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/ratelimit"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// Rate and Burst bound what one device may send into the agent stream:
// far above what an agent sends (a few progress statuses a second during
// an install), far below a flood.
const (
	Rate  = 20
	Burst = 100
)

// QueueGroup is the queue group the intakes of a cluster share.
const QueueGroup = "thinfleet-intake"

// Options configure the intake.
type Options struct {
	Log *slog.Logger // slog.Default() when nil
	// Metrics count what the service refuses and does; nil counts nothing.
	Metrics *metrics.Metrics
	Conn    *nats.Conn // required: a service connection of the application account
	// Rate and Burst per device; the package's Rate and Burst when zero.
	Rate  float64
	Burst int
}

// Service stores the agents' reports in the agent stream.
type Service struct {
	metrics *metrics.Metrics
	log     *slog.Logger
	nc      *nats.Conn
	limiter *ratelimit.Limiter
	// warned spaces out the warnings about one device's refused messages.
	warned *ratelimit.Limiter
}

// New checks opts and returns an intake ready to Run.
func New(opts Options) (*Service, error) {
	if opts.Conn == nil {
		return nil, errors.New("intake: Conn is required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Rate <= 0 {
		opts.Rate = Rate
	}
	if opts.Burst <= 0 {
		opts.Burst = Burst
	}
	return &Service{metrics: opts.Metrics,
		log: opts.Log, nc: opts.Conn,
		limiter: ratelimit.New(opts.Rate, opts.Burst),
		warned:  ratelimit.New(1.0/60, 1),
	}, nil
}

// Run takes the agents' reports until ctx ends, then drains what it has
// received and returns.
func (s *Service) Run(ctx context.Context) error {
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Drain()
		}
	}()
	for _, subject := range wire.AgentStreamSubjects {
		sub, err := s.nc.QueueSubscribe(subject, QueueGroup, s.handle)
		if err != nil {
			return fmt.Errorf("intake: subscribe to %s: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	<-ctx.Done()
	return nil
}

// handle checks one report and stores it, or refuses it.
func (s *Service) handle(m *nats.Msg) {
	kind, id, err := wire.ParseSubject(m.Subject)
	if err != nil {
		s.refuse(m, string(kind), "", "bad_subject", err)
		return
	}
	if m.Reply != "" && !ownInbox(id, m.Reply) {
		// No answer at all: an answer would go where the reply points.
		s.refuse(m, string(kind), id, "foreign_reply", fmt.Errorf("reply subject %q is not the device's inbox", truncate(m.Reply, 100)))
		return
	}
	if ok, _ := s.limiter.Allow(id); !ok {
		s.refuse(m, string(kind), id, "rate_limited", errors.New("device over its message rate"))
		s.answer(m, 429, "device over its message rate, try again later")
		return
	}
	out := &nats.Msg{Subject: store.StoredSubject(m.Subject), Reply: m.Reply, Data: m.Data}
	if msgID := m.Header.Get(jetstream.MsgIDHeader); msgID != "" {
		if wire.ValidateID(msgID) != nil {
			s.refuse(m, string(kind), id, "bad_msg_id", errors.New("message id outside [A-Za-z0-9_-]{1,64}"))
			s.answer(m, 400, "message id outside [A-Za-z0-9_-]{1,64}")
			return
		}
		out.Header = nats.Header{jetstream.MsgIDHeader: []string{id + "." + msgID}}
	}
	if err := s.nc.PublishMsg(out); err != nil {
		s.log.Error("store agent message", "device", id, "kind", kind, "err", err)
		s.metrics.Dropped(string(kind), "store_failed")
		s.answer(m, 503, "server cannot store the message now, try again later")
	}
}

// ownInbox reports whether reply is a subject under device id's inbox:
// the inbox prefix, then one or more tokens, none empty or a wildcard.
func ownInbox(id, reply string) bool {
	rest, ok := strings.CutPrefix(reply, wire.AgentInboxPrefix(id)+".")
	if !ok || rest == "" || len(reply) > 256 {
		return false
	}
	for _, tok := range strings.Split(rest, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
	}
	return true
}

// refuse counts a refused message, and logs it at most once a minute per
// device.
func (s *Service) refuse(m *nats.Msg, kind, id, reason string, err error) {
	s.metrics.Dropped(kind, reason)
	if ok, _ := s.warned.Allow(id); ok {
		s.log.Warn("refused agent message (further ones from this device for a minute are only counted)",
			"device", id, "subject", truncate(m.Subject, 100), "reason", reason, "err", err)
	}
}

// answer sends the agent a JetStream error in place of an
// acknowledgement; only called once the reply is known to be its inbox.
func (s *Service) answer(m *nats.Msg, code int, description string) {
	if m.Reply == "" {
		return
	}
	var resp struct {
		Error struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	resp.Error.Code, resp.Error.Description = code, description
	data, _ := json.Marshal(resp)
	_ = s.nc.Publish(m.Reply, data)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
