package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

// EnrollmentsBucket keeps one enrollment per device id.
const EnrollmentsBucket = "thinfleet_enrollments"

func (s *Store) openEnrollments(ctx context.Context, replicas int) error {
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: EnrollmentsBucket, Description: "thinfleet device identities, one key per device id",
		History: 5, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return fmt.Errorf("open enrollments bucket: %w", err)
	}
	s.enrollments = kv
	return nil
}

// Enrollment returns device id's enrollment and its revision, or
// ErrNotFound.
func (s *Store) Enrollment(ctx context.Context, id string) (fleet.Enrollment, uint64, error) {
	return get[fleet.Enrollment](ctx, s.enrollments, "enrollment", id)
}

// PutEnrollment writes en if the stored revision is still rev (0: none
// stored yet); it fails with a conflict otherwise.
func (s *Store) PutEnrollment(ctx context.Context, en fleet.Enrollment, rev uint64) error {
	data, err := json.Marshal(en)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = s.enrollments.Create(ctx, en.ID, data)
	} else {
		_, err = s.enrollments.Update(ctx, en.ID, data, rev)
	}
	if err != nil {
		return fmt.Errorf("write enrollment %s: %w", en.ID, err)
	}
	return nil
}

// SetEnrollState moves device id to state (an operator's approval or
// revocation). Revoking a device that never enrolled is an error.
func (s *Store) SetEnrollState(ctx context.Context, id string, state fleet.EnrollState) (fleet.Enrollment, error) {
	for range 10 {
		en, rev, err := s.Enrollment(ctx, id)
		if err != nil {
			return fleet.Enrollment{}, err
		}
		if en.State == state {
			return en, nil
		}
		if en.State == fleet.EnrollRevoked {
			return fleet.Enrollment{}, errors.New("the device is revoked; revocation is final")
		}
		if en.State == fleet.EnrollDeleted {
			return fleet.Enrollment{}, ErrNotFound
		}
		en.State, en.Decided = state, time.Now().UTC()
		if err := s.PutEnrollment(ctx, en, rev); err == nil {
			if state == fleet.EnrollApproved {
				// The enrollment service records revocations once the
				// broker has carried them out; an approval is done here.
				_ = s.AppendEvent(ctx, fleet.Event{Device: id, Event: fleet.EventApproved, Detail: "approved by an operator"}, "")
			}
			return en, nil
		}
	}
	return fleet.Enrollment{}, errors.New("enrollment kept changing; try again")
}

// Enrollments returns every enrollment.
func (s *Store) Enrollments(ctx context.Context) ([]fleet.Enrollment, error) {
	ens, err := load(ctx, s.WatchEnrollments)
	if err != nil {
		return nil, fmt.Errorf("list enrollments: %w", err)
	}
	return ens, nil
}

// DeleteDevice forgets device id at an operator's request: its device
// record goes, its enrollment is marked deleted (the enrollment service
// then revokes its key at the broker, which closes its connection, and
// removes the enrollment), and a "deleted" event records who asked. The
// history stays: it is append-only. A device still running enrolls again
// as a new one (pending with --approve-devices); revoke it to keep it
// out. A revoked device keeps its revoked enrollment: deleting it removes
// its record only. It returns ErrNotFound if the store knows nothing of id.
func (s *Store) DeleteDevice(ctx context.Context, id, by string) error {
	if wire.ValidateID(id) != nil {
		return ErrNotFound
	}
	found := false
	for attempt := 0; ; attempt++ {
		en, rev, err := s.Enrollment(ctx, id)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return err
		}
		found = true
		if en.State == fleet.EnrollDeleted || en.State == fleet.EnrollRevoked {
			// A revocation is final: the id stays refused, or the same
			// key could enroll again.
			break
		}
		en.State, en.Decided = fleet.EnrollDeleted, time.Now().UTC()
		if err := s.PutEnrollment(ctx, en, rev); err == nil {
			break
		} else if attempt >= 10 {
			return err
		}
	}
	if _, _, err := s.getDevice(ctx, id); err == nil {
		found = true
		if err := s.devices.Delete(ctx, id); err != nil {
			return fmt.Errorf("delete device %s: %w", id, err)
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if !found {
		return ErrNotFound
	}
	return s.AppendEvent(ctx, fleet.Event{Device: id, Event: fleet.EventDeleted, Detail: "deleted by " + by}, "")
}

// RemoveEnrollment removes device id's enrollment if it is still at
// revision rev: the last step of a deletion.
func (s *Store) RemoveEnrollment(ctx context.Context, id string, rev uint64) error {
	if err := s.enrollments.Delete(ctx, id, jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("remove enrollment %s: %w", id, err)
	}
	return nil
}
