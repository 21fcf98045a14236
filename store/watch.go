package store

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/thinfleet/thinfleet/fleet"

	"github.com/nats-io/nats.go/jetstream"
)

// DeviceUpdate is one value a device watch delivers.
type DeviceUpdate struct {
	// Device is the record as written; only its ID is set when Deleted.
	Device  fleet.Device
	Deleted bool
	// Initial marks the records that were already stored when the watch
	// began; the changes after them have it false.
	Initial bool
	// Synced marks the one update, with no device, that follows the
	// initial records: the caller has seen the whole bucket.
	Synced bool
}

// WatchDevices calls fn with every stored device (Initial set), then once
// with Synced set, then with every change to the devices bucket, until ctx
// ends (it then returns nil) or fn returns an error (returned as is). A
// record that does not decode is skipped. If the watch breaks, it returns
// an error; a caller that watches again gets the current records first,
// so it misses nothing.
func (s *Store) WatchDevices(ctx context.Context, fn func(DeviceUpdate) error) error {
	w, err := s.devices.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch devices: %w", err)
	}
	initial := true
	return follow(ctx, w, "devices", func(e jetstream.KeyValueEntry) error {
		if e == nil {
			initial = false
			return fn(DeviceUpdate{Synced: true})
		}
		u := DeviceUpdate{Initial: initial}
		if e.Operation() != jetstream.KeyValuePut {
			u.Device.ID, u.Deleted = e.Key(), true
		} else if json.Unmarshal(e.Value(), &u.Device) != nil {
			return nil
		}
		return fn(u)
	})
}

// WatchEvents calls started once the watch is in place, then fn with
// every event appended to the history after that, until ctx ends. fn runs
// on the client's delivery goroutine, one event at a time, and should
// return quickly.
func (s *Store) WatchEvents(ctx context.Context, started func(), fn func(fleet.Event)) error {
	cons, err := s.history.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("watch history: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var e fleet.Event
		if json.Unmarshal(m.Data(), &e) != nil {
			return
		}
		if meta, err := m.Metadata(); err == nil {
			e.Seq = meta.Sequence.Stream
		}
		fn(e)
	})
	if err != nil {
		return fmt.Errorf("watch history: %w", err)
	}
	started()
	<-ctx.Done()
	cc.Stop()
	return nil
}

// WatchCatalogChanges calls started once the watch is in place, then fn
// with the catalog after every change from then on, until ctx ends (it
// then returns nil). Unlike WatchCatalog, it does not call fn with the
// catalog as it was when the watch began.
func (s *Store) WatchCatalogChanges(ctx context.Context, started func(), fn func(fleet.Catalog)) error {
	w, err := s.catalog.Watch(ctx, catalogKey, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("watch catalog: %w", err)
	}
	started()
	return follow(ctx, w, "catalog", func(e jetstream.KeyValueEntry) error {
		if e == nil || e.Operation() != jetstream.KeyValuePut {
			return nil
		}
		if c, err := decodeCatalog(e.Value()); err == nil {
			fn(c)
		}
		return nil
	})
}

// follow reads w's updates and hands each to fn, with a nil entry once the
// values stored when the watch began are all in. It returns nil when ctx
// ends, fn's error as is, or an error naming what when the watcher closes
// on its own; a caller that watches again gets the stored values first,
// so it misses nothing.
func follow(ctx context.Context, w jetstream.KeyWatcher, what string, fn func(jetstream.KeyValueEntry) error) error {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch %s: watcher closed", what)
			}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}
