// Package enroll answers agents that ask for their broker credentials and
// carries out operators' revocations.
//
// An agent with the enrollment token asks on thinfleet.enroll.<id> with
// its own public key. The first key to ask for an id gets it: the answer
// is a user JWT for that key, signed by the application account's scoped
// agent key, which the broker lets publish and subscribe only on that id's
// subjects. With approval on, a new device waits (pending) until an
// operator approves it. A revoked device, or a second key asking for a
// taken id, is refused. Revoking a device in the enrollments bucket makes
// the service revoke its key at the broker, which closes its connection.
//
// The service needs the agent signing key, so it runs where the service
// token is: beside the broker.
package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"golang.org/x/time/rate"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/services/internal/sysapi"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// Revoker turns a user key away at the broker.
type Revoker interface {
	Revoke(ctx context.Context, userKey string) error
}

// Issuer signs an agent's user JWT for its id and public key.
type Issuer func(id, userKey string) (string, error)

// Options configure the service.
type Options struct {
	Log *slog.Logger
	// Metrics count what the service refuses and does; nil counts nothing.
	Metrics *metrics.Metrics
	Store   *store.Store
	Conn    *nats.Conn
	Issue   Issuer
	Revoker Revoker
	// Approve keeps new devices pending until an operator approves them.
	Approve bool
	// Rate and Burst bound how many new devices enroll per second
	// (DefaultRate, DefaultBurst when zero): whoever holds the enrollment
	// token cannot fill the store. Devices already known are not counted.
	Rate  float64
	Burst int
	// MaxPending bounds the devices waiting for approval (DefaultMaxPending
	// when zero); more are refused until an operator approves or deletes
	// some.
	MaxPending int
	// SysConn, in the broker's system account, and EnrollAccount, the
	// enrollment account's public key, let the service close enrollment
	// connections held open longer than an enrollment takes, so that
	// connections held on purpose cannot use up the account's limit and
	// lock real agents out. Without them, nothing is closed.
	SysConn       *nats.Conn
	EnrollAccount string
	// HoldLimit is how long an enrollment connection may stay open
	// (DefaultHoldLimit when zero): an agent connects, asks and closes
	// within seconds.
	HoldLimit time.Duration
}

// Defaults for Options.
const (
	DefaultRate       = 10
	DefaultBurst      = 50
	DefaultMaxPending = 1000
	DefaultHoldLimit  = 30 * time.Second
)

// Service is the enrollment service.
type Service struct {
	metrics *metrics.Metrics
	opts    Options
	log     *slog.Logger
	newDevs *rate.Limiter

	mu      sync.Mutex
	pending map[string]bool // ids waiting for approval, from the watch
}

// New checks opts.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Conn == nil || opts.Issue == nil || opts.Revoker == nil {
		return nil, errors.New("enroll: Store, Conn, Issue and Revoker are required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Rate <= 0 {
		opts.Rate = DefaultRate
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.HoldLimit <= 0 {
		opts.HoldLimit = DefaultHoldLimit
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	return &Service{metrics: opts.Metrics,
		opts: opts, log: opts.Log, pending: map[string]bool{},
		newDevs: rate.NewLimiter(rate.Limit(opts.Rate), opts.Burst),
	}, nil
}

// Run answers enrollment requests and carries out revocations until ctx
// ends; its subscription and watcher have stopped when it returns.
func (s *Service) Run(ctx context.Context) error {
	sub, err := s.opts.Conn.QueueSubscribe(wire.AllEnrollRequests, "enroll", func(m *nats.Msg) {
		resp := s.handle(ctx, m.Subject, m.Data)
		data, _ := json.Marshal(resp)
		_ = m.Respond(data)
	})
	if err != nil {
		return fmt.Errorf("enroll: subscribe: %w", err)
	}
	defer sub.Unsubscribe()
	if s.opts.SysConn != nil && s.opts.EnrollAccount != "" {
		done := make(chan struct{})
		go func() { defer close(done); s.reap(ctx) }()
		defer func() { <-done }()
	}
	return s.watchRevocations(ctx)
}

func (s *Service) handle(ctx context.Context, subject string, data []byte) wire.EnrollResponse {
	id, err := wire.EnrollID(subject)
	if err != nil {
		s.metrics.Dropped("enroll", "bad_subject")
		return refuse("invalid device id")
	}
	req, err := wire.Decode[wire.EnrollRequest](data)
	if err != nil {
		s.log.Warn("dropped enrollment request", "device", id, "err", err)
		s.metrics.Dropped("enroll", wire.DropReason(err))
		return refuse("invalid request: " + err.Error())
	}
	for range 5 {
		resp, err := s.decide(ctx, id, req)
		if err == nil {
			return resp
		}
		s.log.Warn("enrollment", "device", id, "err", err)
	}
	return refuse("the server could not record the enrollment; try again")
}

// decide answers one request, recording a new enrollment with
// compare-and-set so that two keys racing for an id cannot both win.
func (s *Service) decide(ctx context.Context, id string, req wire.EnrollRequest) (wire.EnrollResponse, error) {
	en, _, err := s.opts.Store.Enrollment(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if refusal := s.admit(); refusal != "" {
			return refuse(refusal), nil
		}
		en = fleet.Enrollment{ID: id, PublicKey: req.PublicKey, Hostname: req.Hostname, State: fleet.EnrollApproved, Requested: time.Now().UTC()}
		kind, detail := fleet.EventEnrolled, "credentials issued"
		if s.opts.Approve {
			en.State = fleet.EnrollPending
			kind, detail = fleet.EventPending, "waiting for an operator's approval"
		} else {
			en.Decided = en.Requested
		}
		if err := s.opts.Store.PutEnrollment(ctx, en, 0); err != nil {
			return wire.EnrollResponse{}, err
		}
		s.event(ctx, id, kind, detail)
	case err != nil:
		return wire.EnrollResponse{}, err
	}
	switch {
	case en.State == fleet.EnrollRevoked:
		return refuse("this device has been revoked"), nil
	case en.State == fleet.EnrollDeleted:
		return refuse("this device is being deleted; try again in a few seconds"), nil
	case en.PublicKey != req.PublicKey:
		s.event(ctx, id, fleet.EventRefused, "another key asked for this id")
		return refuse("this id is enrolled with another key"), nil
	case en.State == fleet.EnrollPending:
		return wire.EnrollResponse{Status: wire.EnrollPending}, nil
	}
	userJWT, err := s.opts.Issue(id, req.PublicKey)
	if err != nil {
		return refuse("cannot issue credentials: " + err.Error()), nil
	}
	s.log.Info("credentials issued", "device", id)
	return wire.EnrollResponse{Status: wire.EnrollApproved, JWT: userJWT}, nil
}

// admit reports why a new device may not enroll now, or "".
func (s *Service) admit() string {
	if s.opts.Approve {
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n >= s.opts.MaxPending {
			s.metrics.Dropped("enroll", "too_many_pending")
			return fmt.Sprintf("%d devices are waiting for approval already; an operator must approve or delete some first", n)
		}
	}
	if !s.newDevs.Allow() {
		s.metrics.Dropped("enroll", "rate_limited")
		return "the server is taking too many new devices at once; try again shortly"
	}
	return ""
}

func (s *Service) event(ctx context.Context, id string, kind fleet.EventKind, detail string) {
	if err := s.opts.Store.AppendEvent(ctx, fleet.Event{Device: id, Event: kind, Detail: detail}, ""); err != nil {
		s.log.Warn("append event", "device", id, "err", err)
	}
}

func refuse(reason string) wire.EnrollResponse {
	return wire.EnrollResponse{Status: wire.EnrollRefused, Reason: reason}
}

// watchRevocations revokes at the broker every key whose enrollment is
// revoked: the ones already revoked when it starts (the broker keeps
// them, so this is a repeat that costs nothing) and each new one.
func (s *Service) watchRevocations(ctx context.Context) error {
	s.opts.Store.Rewatch(ctx, s.log, "enrollments", func(ctx context.Context) error {
		return s.opts.Store.WatchEnrollments(ctx, func(c store.Change[fleet.Enrollment]) error {
			if c.Loaded {
				return nil
			}
			en := c.Value
			s.mu.Lock()
			if en.State == fleet.EnrollPending {
				s.pending[en.ID] = true
			} else {
				delete(s.pending, en.ID)
			}
			s.mu.Unlock()
			if en.State == fleet.EnrollDeleted {
				s.finishDelete(ctx, en)
				return nil
			}
			if en.State != fleet.EnrollRevoked || !nkeys.IsValidPublicUserKey(en.PublicKey) {
				return nil
			}
			if err := s.opts.Revoker.Revoke(ctx, en.PublicKey); err != nil {
				s.log.Error("revoke at the broker", "device", en.ID, "err", err)
				return nil
			}
			if !c.Initial {
				s.log.Info("device revoked", "device", en.ID)
				s.event(ctx, en.ID, fleet.EventRevoked, "revoked by an operator; the broker refuses it")
			}
			return nil
		})
	})
	return nil
}

// finishDelete carries out an operator's deletion: the device's key is
// revoked at the broker (which closes its connection), then its
// enrollment is removed, so the id is free for a new key.
func (s *Service) finishDelete(ctx context.Context, en fleet.Enrollment) {
	if nkeys.IsValidPublicUserKey(en.PublicKey) {
		if err := s.opts.Revoker.Revoke(ctx, en.PublicKey); err != nil {
			s.log.Error("revoke a deleted device's key at the broker", "device", en.ID, "err", err)
			return
		}
	}
	cur, rev, err := s.opts.Store.Enrollment(ctx, en.ID)
	if err != nil || cur.State != fleet.EnrollDeleted {
		return
	}
	if err := s.opts.Store.RemoveEnrollment(ctx, en.ID, rev); err != nil {
		s.log.Error("remove a deleted device's enrollment", "device", en.ID, "err", err)
		return
	}
	s.mu.Lock()
	delete(s.pending, en.ID)
	s.mu.Unlock()
	s.log.Info("device deleted", "device", en.ID)
}

// reap closes enrollment connections open longer than an enrollment
// takes, until ctx ends.
func (s *Service) reap(ctx context.Context) {
	tick := time.NewTicker(s.opts.HoldLimit / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		conns, err := sysapi.Connections(ctx, s.opts.SysConn, s.opts.EnrollAccount)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("list enrollment connections", "err", err)
			}
			continue
		}
		closed := 0
		for _, c := range conns {
			if time.Since(c.Start) < s.opts.HoldLimit {
				continue
			}
			if err := sysapi.Kick(ctx, s.opts.SysConn, c); err != nil {
				s.log.Warn("close a lingering enrollment connection", "err", err)
				continue
			}
			closed++
			s.metrics.Dropped("enroll", "connection_held")
		}
		if closed > 0 {
			s.log.Warn("closed enrollment connections held open too long", "closed", closed, "longer_than", s.opts.HoldLimit)
		}
	}
}
