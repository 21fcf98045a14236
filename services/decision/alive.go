package decision

import (
	"context"
	"fmt"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// watchAlive offers the target to every device that turns alive again,
// until ctx ends. A catalog change offers nothing to a device that is not
// alive, and a device cut off from the network may come back on the same
// connection, without a new connect and so without reporting its version
// again: this is how it still catches up on what it missed.
func (s *Service) watchAlive(ctx context.Context) error {
	store.Rewatch(ctx, s.log, "devices", func(ctx context.Context) error {
		alive := map[string]bool{} // as last seen by this watch
		return s.store.WatchDevices(ctx, func(u store.Change[fleet.Device]) error {
			if u.Loaded {
				return nil
			}
			id := u.Key
			if u.Deleted {
				delete(alive, id)
				return nil
			}
			was, known := alive[id]
			alive[id] = u.Value.Alive
			if !u.Initial && known && !was && u.Value.Alive {
				s.deviceBack(ctx, u.Value)
			}
			return nil
		})
	})
	return nil
}

// deviceBack offers the target to d, alive again, if it is below it.
func (s *Service) deviceBack(ctx context.Context, d fleet.Device) {
	c, err := s.store.Catalog(ctx)
	if err != nil {
		s.log.Error("device back, cannot read the catalog", "device", d.ID, "err", err)
		return
	}
	target, ok := c.TargetRelease()
	if !ok || !wire.Newer(target.Version, d.Version) {
		return
	}
	if why := holdBack(d, target); why != "" {
		s.log.Debug("no offer", "device", d.ID, "version", target.Version, "reason", why)
		return
	}
	dedup := fmt.Sprintf("offered-%s-%s-back-%d", d.ID, target.SHA256, d.LastSeen.UnixNano())
	if err := s.offer(ctx, d.ID, d.Version, target, dedup); err != nil {
		s.log.Error("offer", "device", d.ID, "version", target.Version, "err", err)
	}
}
