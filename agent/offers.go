package agent

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/wire"
)

// onOffer receives an offer from NATS. It only decodes and queues: the
// installer takes the offer. Of the offers that arrive during an install
// only the newest is kept, since it is the server's latest word; one for
// the version being installed already has its answer coming.
func (a *Agent) onOffer(msg *nats.Msg) {
	o, err := wire.Decode[wire.Offer](msg.Data)
	if err != nil {
		a.log.Warn("invalid offer dropped", "reason", wire.DropReason(err), "err", err)
		return
	}
	a.mu.Lock()
	if a.running != "" && sameVersion(a.running, o.Version) {
		a.pending = nil
		a.mu.Unlock()
		a.log.Debug("offer ignored: being installed", "version", o.Version, "offer", o.ID)
		return
	}
	a.pending = &o
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// installer installs the pending offers one at a time until ctx ends.
func (a *Agent) installer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		}
		for ctx.Err() == nil {
			o, ok := a.take()
			if !ok {
				break
			}
			a.install(ctx, o)
			a.mu.Lock()
			a.running = ""
			a.mu.Unlock()
		}
	}
}

// take returns the pending offer if it is one to install, and marks its
// version as running.
func (a *Agent) take() (wire.Offer, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.pending != nil {
		o := *a.pending
		a.pending = nil
		if why := refuseOffer(o, a.store.get()); why != "" {
			a.log.Info("offer ignored", "version", o.Version, "offer", o.ID, "why", why)
			continue
		}
		a.running = o.Version
		return o, true
	}
	return wire.Offer{}, false
}

// refuseOffer says why o is not to be installed on a machine in state st,
// or "" if it is. The server repeats offers freely; these rules make the
// repeats harmless.
func refuseOffer(o wire.Offer, st state) string {
	switch {
	case st.Version != "" && sameVersion(o.Version, st.Version):
		return "already installed"
	case !o.Rollback && !wire.Newer(o.Version, st.Version):
		return "older than the installed " + st.Version
	}
	if f, ok := st.failed(o.Version); ok && !o.Retry {
		return "failed before: " + f.Reason
	}
	return ""
}
