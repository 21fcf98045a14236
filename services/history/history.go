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
	"time"
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
// once ctx has ended, the consumer has drained and the appends on their
// way have landed (or closeWait has passed: their statuses are then
// redelivered at the next start), with no goroutine of its own left
// running; an error only when the consumer cannot be set up.
//
// The appends go through a store.Recorder, many on their way at once: a
// thousand agents reporting at once cost a thousand appends in flight, not
// one synced append after another. A status is acknowledged once its
// event is in the history.
func (s *Service) Run(ctx context.Context) error {
	rec := s.store.NewRecorder(s.log, s.metrics, appends)
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeWait)
		defer cancel()
		rec.Close(cctx)
	}()
	return s.store.ConsumeAgentAsync(ctx, s.log, s.metrics, ConsumerName, []string{wire.AllStatuses},
		func(ctx context.Context, m store.AgentMessage, done func(error)) { s.handle(ctx, rec, m, done) })
}

// Bounds of the appends.
const (
	appends   = 256             // on their way at once
	closeWait = 5 * time.Second // for those on their way when Run ends
)

// handle records one status and calls done once the event is in. The
// event's dedup id is the message's id, so a redelivered status is kept
// once.
func (s *Service) handle(ctx context.Context, rec *store.Recorder, m store.AgentMessage, done func(error)) {
	e, err := event(m)
	if err != nil || e == nil {
		done(err)
		return
	}
	st := e.Event
	rec.AppendOnce(ctx, *e, m.ID, func(appended bool, err error) {
		// A redelivered status is kept once, and counted once.
		if err == nil && appended && (st == fleet.EventKind(wire.StateInstalled) || st == fleet.EventKind(wire.StateFailed)) {
			s.metrics.Installed(string(st))
		}
		if err == nil {
			s.log.Debug("install step", "device", m.Device, "state", st, "version", e.Version)
		}
		done(err)
	})
}

// event is the history event of one status message; nil for a status
// that makes none.
func event(m store.AgentMessage) (*fleet.Event, error) {
	if m.Kind != wire.KindStatus {
		return nil, store.Permanent(fmt.Errorf("unexpected %s message", m.Kind))
	}
	st, err := wire.Decode[wire.Status](m.Data)
	if err != nil {
		return nil, store.Permanent(err)
	}
	if st.Progress {
		return nil, nil // bytes moving within a step: the device record has them
	}
	// Without the signature of a download link the agent may quote.
	detail := downloadlink.Redact(st.Detail)
	if st.State == wire.StateFailed {
		detail = failureDetail(detail, downloadlink.Redact(st.Output))
	}
	return &fleet.Event{
		Time: m.Time, Device: m.Device, Event: fleet.EventKind(st.State),
		Version: st.Version, Detail: detail,
	}, nil
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
