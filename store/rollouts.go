package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/fleet"
)

// The buckets of an operator's choices: groups (saved selectors) and
// rollouts, one key per name.
const (
	GroupsBucket   = "thinfleet_groups"
	RolloutsBucket = "thinfleet_rollouts"
)

// ErrExists is returned when creating a value whose key is taken.
var ErrExists = errors.New("already exists")

func (s *Store) openRollouts(ctx context.Context, replicas int) error {
	var err error
	s.groups, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: GroupsBucket, Description: "thinfleet device groups, one key per group name",
		History: 5, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return fmt.Errorf("open groups bucket: %w", err)
	}
	s.rollouts, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: RolloutsBucket, Description: "thinfleet rollouts, one key per rollout id",
		// A rollout keeps its members: about 40 bytes a device.
		History: 5, Storage: jetstream.FileStorage, Replicas: replicas, MaxValueSize: 1 << 20,
	})
	if err != nil {
		return fmt.Errorf("open rollouts bucket: %w", err)
	}
	return nil
}

// Group returns the group called name, or ErrNotFound.
func (s *Store) Group(ctx context.Context, name string) (fleet.Group, error) {
	g, _, err := getNamed[fleet.Group](ctx, s.groups, "group", name)
	return g, err
}

// Groups returns every group, in no particular order.
func (s *Store) Groups(ctx context.Context) ([]fleet.Group, error) {
	gs, err := load(ctx, s.WatchGroups)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return gs, nil
}

// UpdateGroup applies fn to the group called name (a zero Group with only
// the name set when there is none) and writes it with compare-and-set,
// as UpdateDevice does.
func (s *Store) UpdateGroup(ctx context.Context, name string, fn func(g *fleet.Group) error) (fleet.Group, error) {
	return update(ctx, s.groups, "group", name, func(g *fleet.Group) error {
		g.Name = name
		return fn(g)
	})
}

// DeleteGroup removes the group called name; ErrNotFound if there is none.
func (s *Store) DeleteGroup(ctx context.Context, name string) error {
	return deleteNamed(ctx, s.groups, "group", name)
}

// WatchGroups watches the groups bucket.
func (s *Store) WatchGroups(ctx context.Context, fn func(Change[fleet.Group]) error) error {
	w, err := s.groups.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch groups: %w", err)
	}
	return follow(ctx, w, "groups", fn)
}

// Rollout returns the rollout with id, or ErrNotFound.
func (s *Store) Rollout(ctx context.Context, id string) (fleet.Rollout, error) {
	r, _, err := getNamed[fleet.Rollout](ctx, s.rollouts, "rollout", id)
	return r, err
}

// Rollouts returns every rollout, in no particular order.
func (s *Store) Rollouts(ctx context.Context) ([]fleet.Rollout, error) {
	rs, err := load(ctx, s.WatchRollouts)
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	return rs, nil
}

// CreateRollout writes a new rollout; ErrExists if its id is taken.
func (s *Store) CreateRollout(ctx context.Context, r fleet.Rollout) error {
	if err := fleet.ValidateGroupName(r.ID); err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode rollout %s: %w", r.ID, err)
	}
	_, err = s.rollouts.Create(ctx, r.ID, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("rollout %s: %w", r.ID, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("write rollout %s: %w", r.ID, err)
	}
	return nil
}

// UpdateRollout applies fn to the rollout with id and writes it with
// compare-and-set, retrying when another writer came in between;
// ErrNotFound if there is none. fn may return ErrUnchanged.
func (s *Store) UpdateRollout(ctx context.Context, id string, fn func(r *fleet.Rollout) error) (fleet.Rollout, error) {
	return update(ctx, s.rollouts, "rollout", id, func(r *fleet.Rollout) error {
		if r.ID == "" {
			return ErrNotFound
		}
		return fn(r)
	})
}

// DeleteRollout removes the rollout with id; ErrNotFound if there is none.
func (s *Store) DeleteRollout(ctx context.Context, id string) error {
	return deleteNamed(ctx, s.rollouts, "rollout", id)
}

// WatchRollouts watches the rollouts bucket.
func (s *Store) WatchRollouts(ctx context.Context, fn func(Change[fleet.Rollout]) error) error {
	w, err := s.rollouts.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch rollouts: %w", err)
	}
	return follow(ctx, w, "rollouts", fn)
}

// getNamed is get for a key that is a name (ValidateGroupName's form).
func getNamed[T any](ctx context.Context, kv jetstream.KeyValue, what, name string) (T, uint64, error) {
	return getKey[T](ctx, kv, what, name, fleet.ValidateGroupName)
}

// update applies fn to the value under name in kv (zero when there is
// none) and writes it with compare-and-set, retrying on a conflict.
func update[T any](ctx context.Context, kv jetstream.KeyValue, what, name string, fn func(*T) error) (T, error) {
	var zero T
	if err := fleet.ValidateGroupName(name); err != nil {
		return zero, err
	}
	for attempt := 0; ; attempt++ {
		v, rev, err := getNamed[T](ctx, kv, what, name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return zero, err
		}
		before := v
		if err := fn(&v); errors.Is(err, ErrUnchanged) {
			return before, nil
		} else if err != nil {
			return zero, err
		}
		data, err := json.Marshal(v)
		if err != nil {
			return zero, fmt.Errorf("encode %s %s: %w", what, name, err)
		}
		if rev == 0 {
			_, err = kv.Create(ctx, name, data)
		} else {
			_, err = kv.Update(ctx, name, data, rev)
		}
		if err == nil {
			return v, nil
		}
		conflict := errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
		if !conflict || attempt >= 20 {
			return zero, fmt.Errorf("write %s %s: %w", what, name, err)
		}
	}
}

// deleteNamed removes name from kv; ErrNotFound if it holds none.
func deleteNamed(ctx context.Context, kv jetstream.KeyValue, what, name string) error {
	if fleet.ValidateGroupName(name) != nil {
		return ErrNotFound
	}
	if _, err := kv.Get(ctx, name); errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrNotFound
	} else if err != nil {
		return fmt.Errorf("get %s %s: %w", what, name, err)
	}
	if err := kv.Delete(ctx, name); err != nil {
		return fmt.Errorf("delete %s %s: %w", what, name, err)
	}
	return nil
}
