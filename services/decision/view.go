package decision

import (
	"context"
	"fmt"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
)

// watchDevices keeps s.devices a copy of the devices bucket until ctx
// ends, and acts on what changes: a device that turns alive again, or
// whose platform becomes known, is offered the target if it is below it;
// a failed install is counted for its retry; a planned retry is timed.
// A catalog change offers nothing to a device that is not alive, and a
// device cut off from the network may come back on the same connection,
// without a new connect and so without reporting its version again: this
// is how it still catches up on what it missed.
//
// The copy keeps only what the decision reads (no disks, interfaces or
// install output). It is first filled from the whole bucket, and s.ready
// closed then; a watch that breaks is started again, and the copy
// replaced by what the new watch reads.
func (s *Service) watchDevices(ctx context.Context) error {
	s.store.Rewatch(ctx, s.log, "devices", func(ctx context.Context) error {
		var fresh map[string]fleet.Device // filled until the bucket is read
		return s.store.WatchDevices(ctx, func(u store.Change[fleet.Device]) error {
			switch {
			case u.Loaded:
				s.synced(fresh)
				fresh = nil
			case fresh == nil && u.Initial:
				fresh = map[string]fleet.Device{}
				fallthrough
			case fresh != nil:
				if !u.Deleted {
					fresh[u.Key] = trim(u.Value)
				}
			default:
				s.changed(ctx, u)
			}
			return nil
		})
	})
	return nil
}

// synced replaces the copy with devices, the whole bucket as just read,
// and plans the retries it holds.
func (s *Service) synced(devices map[string]fleet.Device) {
	if devices == nil {
		devices = map[string]fleet.Device{}
	}
	var count []string
	for id, d := range devices {
		if d.NeedsCount(s.plan(d).Release) {
			count = append(count, id)
		}
		if rs := d.Retries; rs != nil && !rs.Next.IsZero() {
			s.retries.at(id, rs.Next)
		}
	}
	s.mu.Lock()
	s.devices = devices
	s.mu.Unlock()
	s.retries.count(count...)
	select {
	case <-s.ready:
	default:
		close(s.ready)
		s.log.Info("devices loaded", "devices", len(devices))
	}
}

// changed applies one change of the bucket to the copy and acts on it.
func (s *Service) changed(ctx context.Context, u store.Change[fleet.Device]) {
	id := u.Key
	s.mu.Lock()
	prev, known := s.devices[id]
	if u.Deleted {
		delete(s.devices, id)
	} else {
		s.devices[id] = trim(u.Value)
	}
	s.mu.Unlock()
	if u.Deleted {
		s.om.Lock()
		delete(s.sent, id)
		s.om.Unlock()
		return
	}
	d := u.Value
	if rs := d.Retries; rs != nil && !rs.Next.IsZero() && (prev.Retries == nil || !prev.Retries.Next.Equal(rs.Next)) {
		s.retries.at(id, rs.Next)
	}
	d = trim(d)
	t := s.plan(d)
	if d.NeedsCount(t.Release) {
		s.retries.count(id)
	}
	if known {
		s.concurrencyFreed(ctx, prev, d)
	}
	if !d.Alive {
		return
	}
	switch {
	case known && !prev.Alive:
		// Back: once per return, however often the record is written.
		s.reconsider(ctx, d, t, fmt.Sprintf("back-%d", d.LastSeen.UnixNano()))
	case len(t.Release.Platforms) > 0 && platform(prev) != platform(d):
		// Its platform became known (or changed): the release may be
		// for it after all.
		s.reconsider(ctx, d, t, "platform-"+platform(d))
	case known && planInputs(prev) != planInputs(d):
		// Its labels, tags or pin changed: offered if
		// its plan differs from what it was offered.
		if t.OK && !time.Now().Before(t.NotBefore) {
			s.offerAll(ctx, s.admit([]candidate{{d, t}}, false), "device changed", nil)
		}
	}
}

// planInputs is what of a device, besides its version and install,
// Plan reads: a change of it re-plans the device.
func planInputs(d fleet.Device) string {
	pin := ""
	if d.Pin != nil {
		pin = d.Pin.Version
	}
	return d.Labels.String() + "|" + d.Tags.String() + "|" + pin
}

// reconsider offers d, alive, its plan t unless nothing is to be offered
// now; why makes the history event's dedup id.
func (s *Service) reconsider(ctx context.Context, d fleet.Device, t fleet.Target, why string) {
	if !t.OK || time.Now().Before(t.NotBefore) {
		s.log.Debug("no offer", "device", d.ID, "version", t.Release.Version, "reason", t.Why)
		return
	}
	s.offer(ctx, d, t, fmt.Sprintf("offered-%s-%s-%s", d.ID, t.Release.SHA256, why))
}

// device returns the copy of device id's record.
func (s *Service) device(id string) (fleet.Device, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.devices[id]
	return d, ok
}

func platform(d fleet.Device) string { return fleet.Platform(d.Hardware.OS, d.Hardware.Arch) }

// trim keeps of d what the decision reads.
func trim(d fleet.Device) fleet.Device {
	t := fleet.Device{ID: d.ID, Alive: d.Alive, Version: d.Version, LastSeen: d.LastSeen, Retries: d.Retries,
		Labels: d.Labels, Tags: d.Tags, Pin: d.Pin}
	t.Hardware.OS, t.Hardware.Arch = d.Hardware.OS, d.Hardware.Arch
	if d.Install != nil {
		in := *d.Install
		in.Output = ""
		t.Install = &in
	}
	return t
}
