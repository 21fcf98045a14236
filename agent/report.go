package agent

import (
	"context"
	"reflect"
	"time"

	"github.com/thinfleet/thinfleet/agent/hardware"
	"github.com/thinfleet/thinfleet/wire"
)

// How often the hardware is read, and how often it is reported when
// nothing changed.
const (
	hardwareCheck   = time.Minute
	hardwareRefresh = 10 * time.Minute
	hardwareTimeout = 20 * time.Second
)

// reporter sends the hardware and the installed version whenever asked
// (at start and on every connect), and the hardware again when it changes
// or has not been sent for a while. It returns when ctx ends.
func (a *Agent) reporter(ctx context.Context) {
	t := time.NewTicker(hardwareCheck)
	defer t.Stop()
	var last wire.Hardware
	var lastSent time.Time
	report := func(always bool) {
		hw := a.collectHardware(ctx)
		changed := !reflect.DeepEqual(hw.Fingerprint(), last.Fingerprint())
		if !always && !changed && time.Since(lastSent) < hardwareRefresh {
			return
		}
		if changed && !lastSent.IsZero() {
			a.log.Info("hardware changed")
		}
		a.session.ReportHardware(hw, a.opts.AgentVersion, a.opts.Labels)
		last, lastSent = hw, time.Now()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.reportNow:
			report(true)
			a.reportVersion()
		case <-t.C:
			report(false)
		}
	}
}

func (a *Agent) collectHardware(ctx context.Context) wire.Hardware {
	ctx, cancel := context.WithTimeout(ctx, hardwareTimeout)
	defer cancel()
	hw, err := hardware.Collect(ctx)
	if err != nil {
		a.log.Debug("some hardware facts unavailable", "err", err)
	}
	return hw
}

// reportVersion sends the installed version as state.json records it.
func (a *Agent) reportVersion() {
	st := a.store.get()
	a.session.ReportVersion(st.Version, st.PreviousVersion)
}

// status sends one step of an install.
func (a *Agent) status(s wire.Status) {
	a.session.Status(s)
}
