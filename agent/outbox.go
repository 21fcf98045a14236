package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/wire"
)

// outbox publishes the agent's reports through JetStream, in order, each
// retried until the server's stream acknowledges it: an acknowledged
// status is on the server's disk and survives its crash. Queuing keeps an
// install from stalling while the server is away.
//
// Reports that a newer one makes pointless are replaced while queued (the
// latest hardware or version report wins), and progress statuses are
// dropped once the queue is long, so the queue stays small however long
// the server is gone.
type outbox struct {
	log   *slog.Logger
	mu    sync.Mutex
	queue []outMsg
	ready chan struct{} // has a token while the queue may be non-empty
}

type outMsg struct {
	subject string
	data    []byte
	msgID   string // lets the stream drop a retry it already stored
	kind    outKind
}

type outKind int

const (
	kindStatus   outKind = iota // every one matters, in order
	kindProgress                // droppable
	kindLatest                  // only the newest of its subject matters
)

// Publishing limits.
const (
	maxQueueForProgress = 64
	publishTimeout      = 5 * time.Second
	publishBackoffBase  = 250 * time.Millisecond
	publishBackoffMax   = 10 * time.Second
	connectedPoll       = 100 * time.Millisecond
)

func newOutbox(log *slog.Logger) *outbox {
	return &outbox{log: log, ready: make(chan struct{}, 1)}
}

// send queues m for subject. A message that does not validate is a bug in
// the agent: it is logged and not sent, as the server would drop it.
func send[T wire.Message](o *outbox, subject string, m T, kind outKind) {
	if err := m.Validate(); err != nil {
		o.log.Error("not sending invalid message", "subject", subject, "err", err)
		return
	}
	data, err := json.Marshal(m)
	if err != nil {
		o.log.Error("not sending unencodable message", "subject", subject, "err", err)
		return
	}
	msg := outMsg{subject: subject, data: data, msgID: randomHex(12), kind: kind}
	o.mu.Lock()
	switch kind {
	case kindProgress:
		if len(o.queue) >= maxQueueForProgress {
			o.mu.Unlock()
			return
		}
	case kindLatest:
		for i, q := range o.queue {
			if q.kind == kindLatest && q.subject == subject {
				o.queue = append(o.queue[:i], o.queue[i+1:]...)
				break
			}
		}
	}
	o.queue = append(o.queue, msg)
	o.mu.Unlock()
	o.signal()
}

func (o *outbox) signal() {
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// next takes the first queued message, if any.
func (o *outbox) next() (outMsg, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		return outMsg{}, false
	}
	m := o.queue[0]
	o.queue = o.queue[1:]
	return m, true
}

// putBack returns m to the head of the queue, unsent.
func (o *outbox) putBack(m outMsg) {
	o.mu.Lock()
	o.queue = append([]outMsg{m}, o.queue...)
	o.mu.Unlock()
	o.signal()
}

// run publishes queued messages until ctx ends. While connected reports
// false it waits rather than publish: a publish without a connection can
// only fail, and would fill the log.
func (o *outbox) run(ctx context.Context, js jetstream.JetStream, connected func() bool) {
	for {
		m, ok := o.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-o.ready:
				continue
			}
		}
		for attempt := 1; ; attempt++ {
			for !connected() {
				if !sleep(ctx, connectedPoll) {
					o.putBack(m)
					return
				}
			}
			err := o.publish(ctx, js, m)
			if err == nil {
				break
			}
			if attempt == 1 || attempt%10 == 0 {
				o.log.Warn("report not acknowledged yet, retrying", "subject", m.subject, "attempt", attempt, "err", err)
			}
			if !sleep(ctx, jittered(backoff(publishBackoffBase, publishBackoffMax, attempt))) {
				o.putBack(m)
				return
			}
		}
	}
}

// flush tries each queued message once, all within d: the last chance to
// report a result before the agent exits.
func (o *outbox) flush(js jetstream.JetStream, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		m, ok := o.next()
		if !ok {
			return
		}
		if err := o.publish(ctx, js, m); err != nil {
			o.log.Warn("report not sent before exit", "subject", m.subject, "err", err)
			return
		}
	}
}

func (o *outbox) publish(ctx context.Context, js jetstream.JetStream, m outMsg) error {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	_, err := js.Publish(ctx, m.subject, m.data, jetstream.WithMsgID(m.msgID))
	return err
}

// sleep waits d or until ctx ends; it reports whether the full d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
