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
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/metrics"
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
	Log     *slog.Logger
	Store   *fleet.Store
	Conn    *nats.Conn
	Issue   Issuer
	Revoker Revoker
	// Approve keeps new devices pending until an operator approves them.
	Approve bool
}

// Service is the enrollment service.
type Service struct {
	opts Options
	log  *slog.Logger
}

// New checks opts.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Conn == nil || opts.Issue == nil || opts.Revoker == nil {
		return nil, errors.New("enroll: Store, Conn, Issue and Revoker are required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Service{opts: opts, log: opts.Log}, nil
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
	return s.watchRevocations(ctx)
}

func (s *Service) handle(ctx context.Context, subject string, data []byte) wire.EnrollResponse {
	id, err := wire.EnrollID(subject)
	if err != nil {
		metrics.Dropped("enroll", "bad_subject")
		return refuse("invalid device id")
	}
	req, err := wire.Decode[wire.EnrollRequest](data)
	if err != nil {
		s.log.Warn("dropped enrollment request", "device", id, "err", err)
		metrics.Dropped("enroll", wire.DropReason(err))
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
	case errors.Is(err, fleet.ErrNotFound):
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
	for {
		err := s.opts.Store.WatchEnrollments(ctx, func(en fleet.Enrollment, initial bool) error {
			if en.State != fleet.EnrollRevoked || !nkeys.IsValidPublicUserKey(en.PublicKey) {
				return nil
			}
			if err := s.opts.Revoker.Revoke(ctx, en.PublicKey); err != nil {
				s.log.Error("revoke at the broker", "device", en.ID, "err", err)
				return nil
			}
			if !initial {
				s.log.Info("device revoked", "device", en.ID)
				s.event(ctx, en.ID, fleet.EventRevoked, "revoked by an operator; the broker refuses it")
			}
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("enrollment watch ended; restarting", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
