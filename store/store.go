// Package store keeps the server's state in JetStream: the devices,
// enrollments and catalog in key-value buckets, the agents' messages and
// the append-only update history in streams, so that no service holds
// anything in memory alone. Every service and the web layer use a Store;
// the agent never imports this package.
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

// The JetStream names. Changing one is a data migration.
const (
	DevicesBucket = "thinfleet_devices"
	CatalogBucket = "thinfleet_catalog"
	AgentStream   = "THINFLEET_AGENT"
	HistoryStream = "THINFLEET_HISTORY"

	catalogKey    = "catalog"
	historyPrefix = "thinfleet.history."
)

// ErrNotFound is returned for a device that the store does not hold.
var ErrNotFound = errors.New("not found")

// Options tune the JetStream resources a Store creates.
type Options struct {
	// Replicas is the replication factor of every bucket and stream: 1 on
	// a single server, 3 on a cluster.
	Replicas int
	// AgentMaxAge is how long agent messages wait for a service that is
	// down before they are dropped.
	AgentMaxAge time.Duration
}

// Store is the server's state in JetStream. It is safe for concurrent use.
type Store struct {
	js      jetstream.JetStream
	devices jetstream.KeyValue
	catalog jetstream.KeyValue
	agent   jetstream.Stream
	history jetstream.Stream

	enrollments jetstream.KeyValue
	groups      jetstream.KeyValue
	rollouts    jetstream.KeyValue
	audit       jetstream.Stream
	replicas    int
}

// Open creates (or updates) the buckets and streams and returns a Store on
// them. Every service calls it at start; it is idempotent.
func Open(ctx context.Context, js jetstream.JetStream, opts Options) (*Store, error) {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.AgentMaxAge <= 0 {
		opts.AgentMaxAge = 7 * 24 * time.Hour
	}
	s := &Store{js: js, replicas: opts.Replicas}
	var err error
	s.devices, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: DevicesBucket, Description: "thinfleet devices, one key per device id",
		History: 1, Storage: jetstream.FileStorage, Replicas: opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open devices bucket: %w", err)
	}
	s.catalog, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: CatalogBucket, Description: "thinfleet release catalog",
		History: 5, Storage: jetstream.FileStorage, Replicas: opts.Replicas,
		MaxValueSize: 4 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("open catalog bucket: %w", err)
	}
	s.agent, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: AgentStream, Description: "messages from agents, kept until every service has them",
		Subjects: append(StoredSubjects(), probeSubject), Storage: jetstream.FileStorage, Replicas: opts.Replicas,
		MaxAge: opts.AgentMaxAge, MaxMsgSize: wire.MaxMessageSize, Discard: jetstream.DiscardOld,
		// Each subject carries one device: a flooding agent pushes out
		// only its own oldest messages, never another device's.
		MaxMsgsPerSubject: 1000,
		Duplicates:        2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("open agent stream: %w", err)
	}
	s.history, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: HistoryStream, Description: "thinfleet update history, append-only",
		Subjects: []string{historyPrefix + "*"}, Storage: jetstream.FileStorage, Replicas: opts.Replicas,
		DenyDelete: true, DenyPurge: true, Duplicates: 10 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("open history stream: %w", err)
	}
	if err := s.openEnrollments(ctx, opts.Replicas); err != nil {
		return nil, err
	}
	if err := s.openRollouts(ctx, opts.Replicas); err != nil {
		return nil, err
	}
	if err := s.openAudit(ctx, opts.Replicas); err != nil {
		return nil, err
	}
	return s, nil
}

// JetStream returns the JetStream context the store uses.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// OpenBucket creates (or updates) a key-value bucket that a part of the
// server keeps for itself (the dashboard's sessions), on file storage and
// with the store's replication factor.
func (s *Store) OpenBucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	cfg.Storage, cfg.Replicas = jetstream.FileStorage, s.replicas
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s bucket: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// Device returns one device, or ErrNotFound.
func (s *Store) Device(ctx context.Context, id string) (fleet.Device, error) {
	d, _, err := s.getDevice(ctx, id)
	return d, err
}

func (s *Store) getDevice(ctx context.Context, id string) (fleet.Device, uint64, error) {
	return get[fleet.Device](ctx, s.devices, "device", id)
}

// deviceRecord returns device id's record as stored, or ErrNotFound.
func (s *Store) deviceRecord(ctx context.Context, id string) (DeviceRecord, error) {
	e, err := s.devices.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return DeviceRecord{}, ErrNotFound
	}
	if err != nil {
		return DeviceRecord{}, fmt.Errorf("get device %s: %w", id, err)
	}
	return DeviceRecord{Data: e.Value(), Revision: e.Revision()}, nil
}

// get returns the value under device id in kv, decoded, and its
// revision; ErrNotFound if there is none or id is no device id.
func get[T any](ctx context.Context, kv jetstream.KeyValue, what, id string) (T, uint64, error) {
	return getKey[T](ctx, kv, what, id, wire.ValidateID)
}

// getKey returns the value under key in kv, decoded, and its revision;
// ErrNotFound if there is none or valid refuses the key.
func getKey[T any](ctx context.Context, kv jetstream.KeyValue, what, key string, valid func(string) error) (T, uint64, error) {
	var v T
	if valid(key) != nil {
		return v, 0, ErrNotFound
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return v, 0, ErrNotFound
	}
	if err != nil {
		return v, 0, fmt.Errorf("get %s %s: %w", what, key, err)
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		var zero T
		return zero, 0, fmt.Errorf("decode %s %s: %w", what, key, err)
	}
	return v, e.Revision(), nil
}

// Devices returns every device, in no particular order.
func (s *Store) Devices(ctx context.Context) ([]fleet.Device, error) {
	ds, err := load(ctx, s.WatchDevices)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return ds, nil
}

// ErrUnchanged may be returned by an UpdateDevice function to write nothing.
var ErrUnchanged = errors.New("unchanged")

// UpdateDevice applies fn to the stored device (a zero Device with only the
// id set when there is none) and writes the result with compare-and-set,
// retrying when another service wrote in between. It returns the device as
// written, or as stored when fn returned ErrUnchanged.
func (s *Store) UpdateDevice(ctx context.Context, id string, fn func(d *fleet.Device) error) (fleet.Device, error) {
	if err := wire.ValidateID(id); err != nil {
		return fleet.Device{}, err
	}
	d, _, err := s.updateDevice(ctx, id, nil, false, fn)
	return d, err
}

// UpdateExistingDevice is UpdateDevice for a device that must be there:
// ErrNotFound, and nothing written, when there is no record of id (never
// was, or deleted, even while fn ran). An operator's changes (tags, pins)
// use it, so that they never bring a deleted device back as an empty
// record.
func (s *Store) UpdateExistingDevice(ctx context.Context, id string, fn func(d *fleet.Device) error) (fleet.Device, error) {
	if wire.ValidateID(id) != nil {
		return fleet.Device{}, ErrNotFound
	}
	d, _, err := s.updateDevice(ctx, id, nil, true, fn)
	return d, err
}

// updateDevice is UpdateDevice, starting from held when it is not nil
// (the record as the caller last saw it): the first try then writes
// without reading. Every later try, after another writer came in between,
// reads the record first. With mustExist, no record is ErrNotFound. It
// returns the device and its record as written, or as they stood when fn
// returned ErrUnchanged.
func (s *Store) updateDevice(ctx context.Context, id string, held *DeviceRecord, mustExist bool, fn func(d *fleet.Device) error) (fleet.Device, DeviceRecord, error) {
	for attempt := 0; ; attempt++ {
		var rec DeviceRecord
		if held != nil && attempt == 0 {
			rec = *held
		} else {
			var err error
			if rec, err = s.deviceRecord(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
				return fleet.Device{}, DeviceRecord{}, err
			}
		}
		var d fleet.Device
		if rec.Data != nil {
			if err := json.Unmarshal(rec.Data, &d); err != nil {
				return fleet.Device{}, DeviceRecord{}, fmt.Errorf("decode device %s: %w", id, err)
			}
		}
		if mustExist && rec.Revision == 0 {
			return fleet.Device{}, DeviceRecord{}, ErrNotFound
		}
		before := d
		d.ID = id
		if err := fn(&d); errors.Is(err, ErrUnchanged) {
			return before, rec, nil
		} else if err != nil {
			return fleet.Device{}, DeviceRecord{}, err
		}
		data, err := json.Marshal(d)
		if err != nil {
			return fleet.Device{}, DeviceRecord{}, fmt.Errorf("encode device %s: %w", id, err)
		}
		var rev uint64
		if rec.Revision == 0 {
			rev, err = s.devices.Create(ctx, id, data)
		} else {
			rev, err = s.devices.Update(ctx, id, data, rec.Revision)
		}
		if err == nil {
			return d, DeviceRecord{Data: data, Revision: rev}, nil
		}
		conflict := errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
		if !conflict || attempt >= 20 {
			return fleet.Device{}, DeviceRecord{}, fmt.Errorf("write device %s: %w", id, err)
		}
	}
}

// Catalog returns the current catalog; an empty one before the first scan.
func (s *Store) Catalog(ctx context.Context) (fleet.Catalog, error) {
	e, err := s.catalog.Get(ctx, catalogKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fleet.Catalog{}, nil
	}
	if err != nil {
		return fleet.Catalog{}, fmt.Errorf("get catalog: %w", err)
	}
	return decodeCatalog(e.Value())
}

func decodeCatalog(data []byte) (fleet.Catalog, error) {
	var c fleet.Catalog
	if err := json.Unmarshal(data, &c); err != nil {
		return fleet.Catalog{}, fmt.Errorf("decode catalog: %w", err)
	}
	return c, nil
}

// PutCatalog replaces the catalog.
func (s *Store) PutCatalog(ctx context.Context, c fleet.Catalog) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode catalog: %w", err)
	}
	if _, err := s.catalog.Put(ctx, catalogKey, data); err != nil {
		return fmt.Errorf("put catalog: %w", err)
	}
	return nil
}
