package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

// DeviceRecord is a device's record as the devices bucket holds it: its
// encoding and its revision. A service that keeps the records it watched
// can change a device without reading it first (UpdateDeviceFrom).
type DeviceRecord struct {
	Data     []byte
	Revision uint64 // 0: no record
}

// WatchDeviceRecords watches the devices bucket as WatchDevices does, but
// hands on each record as stored, undecoded, with its revision: a watcher
// that only keeps records to write them back pays no decoding for the
// changes of others.
func (s *Store) WatchDeviceRecords(ctx context.Context, fn func(Change[DeviceRecord]) error) error {
	w, err := s.devices.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch devices: %w", err)
	}
	return followWith(ctx, w, "devices", func(e jetstream.KeyValueEntry, r *DeviceRecord) error {
		*r = DeviceRecord{Data: e.Value(), Revision: e.Revision()}
		return nil
	}, fn)
}

// UpdateDeviceFrom is UpdateDevice starting from held, the device's
// record as the caller last saw it (a zero DeviceRecord: none): fn
// applies to it and the result is written at once, if the record is
// still at held's revision, with no read first. Only when another writer
// came in between is the record read and fn applied again, as
// UpdateDevice does. It returns the device and its record as written,
// or as they stood when fn returned ErrUnchanged.
func (s *Store) UpdateDeviceFrom(ctx context.Context, id string, held DeviceRecord, fn func(d *fleet.Device) error) (fleet.Device, DeviceRecord, error) {
	if err := wire.ValidateID(id); err != nil {
		return fleet.Device{}, DeviceRecord{}, err
	}
	if held.Revision == 0 || held.Data == nil {
		return s.updateDevice(ctx, id, nil, false, fn)
	}
	return s.updateDevice(ctx, id, &held, false, fn)
}

// ReadDevice returns device id as stored, decoded and as its record, for
// a change through UpdateDeviceFrom that does not read it again; a Device
// with only the id set and a zero record when there is none.
func (s *Store) ReadDevice(ctx context.Context, id string) (fleet.Device, DeviceRecord, error) {
	d := fleet.Device{ID: id}
	if wire.ValidateID(id) != nil {
		return d, DeviceRecord{}, nil
	}
	rec, err := s.deviceRecord(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return d, DeviceRecord{}, nil
	}
	if err != nil {
		return d, DeviceRecord{}, err
	}
	if err := json.Unmarshal(rec.Data, &d); err != nil {
		return fleet.Device{ID: id}, DeviceRecord{}, fmt.Errorf("decode device %s: %w", id, err)
	}
	return d, rec, nil
}
