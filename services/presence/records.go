package presence

import (
	"context"
	"encoding/json"
	"time"

	"github.com/thinfleet/thinfleet/store"
)

// watchRecords watches the device records until ctx ends, watching again
// when the watch breaks. Each device keeps its record as last stored
// (bytes and revision, undecoded), for the writer to change without
// reading it first; a record that another service wrote after it costs
// the writer a read, never a lost update (the write is conditional on the
// revision).
//
// The first load also builds the state: a device recorded alive is
// assumed seen at start, and turns notAlive three intervals later unless
// heartbeats arrive. loaded is closed then. A later load (after the watch
// broke) only refreshes the records: what presence learnt meanwhile is
// newer than the store.
func (s *Service) watchRecords(ctx context.Context, start time.Time, loaded chan<- struct{}) {
	first := true
	s.store.Rewatch(ctx, s.log, "presence devices", func(ctx context.Context) error {
		fresh := map[string]store.DeviceRecord{}
		return s.store.WatchDeviceRecords(ctx, func(c store.Change[store.DeviceRecord]) error {
			switch {
			case c.Initial:
				if !c.Deleted {
					fresh[c.Key] = c.Value
				}
			case c.Loaded:
				s.load(fresh, first, start)
				if first {
					first = false
					close(loaded)
				}
				fresh = nil
			default:
				s.recordChanged(c)
			}
			return nil
		})
	})
}

// stored is the part of a record that presence reads.
type stored struct {
	Alive       bool  `json:"alive"`
	HeartbeatMS int64 `json:"heartbeat_interval_ms"`
}

// load takes the records a watch found stored. The first time, it builds
// the state from them; after, it refreshes the records presence holds and
// forgets those no longer stored.
func (s *Service) load(records map[string]store.DeviceRecord, first bool, start time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	alive := 0
	for id, rec := range records {
		d := s.devices[id]
		if d == nil || first {
			var r stored
			if err := json.Unmarshal(rec.Data, &r); err != nil {
				s.log.Warn("device record does not decode", "device", id, "err", err)
				continue
			}
			if d == nil {
				d = &device{}
				s.devices[id] = d
			}
			d.interval, d.alive, d.recorded, d.recordedMS = clampInterval(r.HeartbeatMS), r.Alive, r.Alive, r.HeartbeatMS
			if r.Alive {
				alive++
			}
		}
		if rec.Revision > d.rec.Revision {
			d.rec = rec
		}
	}
	if first {
		s.resumedAt = start
		s.log.Info("presence loaded", "devices", len(records), "alive", alive)
		return
	}
	for id, d := range s.devices {
		if _, ok := records[id]; !ok {
			d.rec = store.DeviceRecord{} // deleted while the watch was away
		}
	}
}

// recordChanged takes a record the watch saw written or deleted.
func (s *Service) recordChanged(c store.Change[store.DeviceRecord]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[c.Key]
	if d == nil {
		return // not a device presence tracks yet: its first write reads
	}
	if c.Revision <= d.rec.Revision {
		return // presence's own write, known already, or older than it
	}
	d.rec = c.Value
	if c.Deleted {
		// No record to start from: a write reads (and finds none).
		d.rec = store.DeviceRecord{Revision: c.Revision}
	}
}
