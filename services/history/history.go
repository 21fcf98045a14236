// Package history writes the update history: one fleet event for every
// step an agent reports of an install (downloading, verifying, installing,
// installed, failed), read from the agent stream through a durable
// consumer so that nothing is missed while the service is down.
package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/thinfleet/thinfleet/downloadlink"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// Options configure the history service.
type Options struct {
	Log *slog.Logger // slog.Default() when nil
	// Metrics count what the service refuses and does; nil counts nothing.
	Metrics *metrics.Metrics
	Store   *store.Store // required
}

// Service turns update statuses into history events.
type Service struct {
	metrics *metrics.Metrics
	log     *slog.Logger
	store   *store.Store
}

// New checks opts and returns a service ready to Run.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("history: Store is required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Service{metrics: opts.Metrics, log: opts.Log, store: opts.Store}, nil
}

// ConsumerName is the durable consumer the service reads through.
const ConsumerName = "history"

// Run appends an event for every install step until ctx ends. It returns
// once ctx has ended and the consumer has drained, with no goroutine of
// its own left running; an error only when the consumer cannot be set up.
func (s *Service) Run(ctx context.Context) error {
	return s.store.ConsumeAgent(ctx, s.log, s.metrics, ConsumerName, []string{wire.AllStatuses}, s.handle)
}

// handle records one status. The event's dedup id is the message's id, so
// a redelivered status is kept once.
func (s *Service) handle(ctx context.Context, m store.AgentMessage) error {
	if m.Kind != wire.KindStatus {
		return store.Permanent(fmt.Errorf("unexpected %s message", m.Kind))
	}
	st, err := wire.Decode[wire.Status](m.Data)
	if err != nil {
		return store.Permanent(err)
	}
	if st.Progress {
		return nil // bytes moving within a step: the device record has them
	}
	// Without the signature of a download link the agent may quote.
	detail := downloadlink.Redact(st.Detail)
	if st.State == wire.StateFailed {
		detail = failureDetail(detail, downloadlink.Redact(st.Output))
	}
	e := fleet.Event{
		Time: m.Time, Device: m.Device, Event: fleet.EventKind(st.State),
		Version: st.Version, Detail: detail,
	}
	appended, err := s.store.AppendEventOnce(ctx, e, m.ID)
	if err != nil {
		return err
	}
	// A redelivered status is kept once, and counted once.
	if appended && (st.State == wire.StateInstalled || st.State == wire.StateFailed) {
		s.metrics.Installed(string(st.State))
	}
	s.log.Debug("install step", "device", m.Device, "state", st.State, "version", st.Version)
	return nil
}

// maxOutputTail bounds the output quoted in a failure's detail.
const maxOutputTail = 300

// failureDetail is the detail of a failed install: the agent's reason,
// then the last line or two of the command's output, briefly.
func failureDetail(detail, output string) string {
	var tail []string
	lines := strings.Split(strings.TrimSpace(output), "\n")
	for i := len(lines) - 1; i >= 0 && len(tail) < 2; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			tail = append([]string{l}, tail...)
		}
	}
	if len(tail) == 0 {
		return detail
	}
	out := shorten(strings.Join(tail, " / "), maxOutputTail)
	if detail == "" {
		return "output: " + out
	}
	return detail + " (output: " + out + ")"
}

// shorten cuts s to at most n bytes at a rune boundary, marking the cut
// with an ellipsis at the front: the end of an output matters most.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	return "…" + s
}
