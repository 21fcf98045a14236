package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/wire"
)

// onOffer receives an offer from NATS. It only decodes, checks and
// queues: the installer takes the offer. Of the offers that arrive during
// an install only the newest is kept, since it is the server's latest
// word; one for the version being installed already has its answer
// coming. A stale or replayed offer is dropped before it can push out the
// one queued.
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
	if why := a.replayed(o, time.Now()); why != "" {
		a.mu.Unlock()
		a.refuseReplay(o, why)
		return
	}
	a.pending = &o
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// replayed says why o looks like an old offer sent again, or "": one
// older than its lifetime (its download link has expired too), or one
// already taken to install.
func (a *Agent) replayed(o wire.Offer, now time.Time) string {
	if age := now.Sub(o.Time); age > wire.OfferLifetime {
		return fmt.Sprintf("stale: made %s ago, offers stand for %s (or this machine's clock is wrong)",
			age.Round(time.Second), wire.OfferLifetime)
	}
	if st := a.store.get(); st.taken(o.ID) {
		return "replayed: this offer was taken before"
	}
	return ""
}

// refuseReplay logs and counts an offer refused as stale or replayed. No
// status is sent: whoever replays offers must not make the agent talk.
func (a *Agent) refuseReplay(o wire.Offer, why string) {
	n := a.refused.Add(1)
	a.log.Warn("offer refused", "version", o.Version, "offer", o.ID, "offer_time", o.Time, "why", why, "refused_total", n)
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

// take returns the pending offer if it is one to install, marks its
// version as running, and records the offer as taken.
func (a *Agent) take() (wire.Offer, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.pending != nil {
		o := *a.pending
		a.pending = nil
		// Checked again: the offer may have waited behind a long install.
		if why := a.replayed(o, time.Now()); why != "" {
			a.refuseReplay(o, why)
			continue
		}
		if why := refuseOffer(o, a.store.get()); why != "" {
			a.log.Info("offer ignored", "version", o.Version, "offer", o.ID, "why", why)
			continue
		}
		if err := a.store.update(func(s *state) { s.recordOffer(o.ID) }); err != nil {
			// Without the record a replay could not be told; refuse
			// rather than install what might come again.
			a.log.Error("offer not taken: state not saved", "version", o.Version, "offer", o.ID, "err", err)
			continue
		}
		a.running = o.Version
		return o, true
	}
	return wire.Offer{}, false
}

// refuseOffer says why o is not to be installed on a machine in state st,
// or "" if it is. The server repeats offers freely; these rules make the
// repeats harmless. Above all, a version lower than the installed one is
// installed only when the offer asks for that rollback.
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
