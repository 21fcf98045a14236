// Package inventory keeps the device records: hostname, hardware and agent
// version from hw.report, the installed version from version.installed,
// and the latest install from update.status. It reads the agent stream
// through a durable consumer, so a report sent while the service was down
// is applied when it comes back, and it writes each record with the
// store's compare-and-set, beside presence, which owns Alive.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/thinfleet/thinfleet/downloadlink"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// Options configure the inventory service.
type Options struct {
	Log *slog.Logger // slog.Default() when nil
	// Metrics count what the service refuses and does; nil counts nothing.
	Metrics *metrics.Metrics
	Store   *store.Store // required
}

// Service applies agent reports to the device records.
type Service struct {
	metrics *metrics.Metrics
	log     *slog.Logger
	store   *store.Store
}

// New checks opts and returns a service ready to Run.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("inventory: Store is required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Service{metrics: opts.Metrics, log: opts.Log, store: opts.Store}, nil
}

// ConsumerName is the durable consumer the service reads through.
const ConsumerName = "inventory"

// workers is how many devices' messages are applied at once. Each
// message costs a read and a synced write of its device's record: one at
// a time, the reports of 10,000 agents finishing a rollout at once took
// minutes to land.
const workers = 32

// Run applies reports until ctx ends. It returns once ctx has ended and
// the consumer has drained, with no goroutine of its own left running; an
// error only when the consumer cannot be set up.
//
// Messages of different devices are applied side by side, by workers; a
// device's messages all go to the same worker, in the order they came, so
// two reports of a device never race here.
func (s *Service) Run(ctx context.Context) error {
	type job struct {
		m    store.AgentMessage
		done func(error)
	}
	queues := make([]chan job, workers)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan job, 64)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range queues[i] {
				j.done(s.handle(ctx, j.m))
			}
		}()
	}
	defer func() {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}()
	subjects := []string{wire.AllHWReports, wire.AllVersionsInstalled, wire.AllStatuses}
	return s.store.ConsumeAgentAsync(ctx, s.log, s.metrics, ConsumerName, subjects, func(ctx context.Context, m store.AgentMessage, done func(error)) {
		h := fnv.New32a()
		h.Write([]byte(m.Device))
		queues[h.Sum32()%workers] <- job{m, done}
	})
}

// handle applies one message. Presence may write the same record in
// between its read and its write, which the store's compare-and-set
// absorbs.
//
// Events are appended before the record is written, with dedup ids made
// from the message id: if the write fails, the redelivered message finds
// the record as before, computes the same events, and they are kept once.
func (s *Service) handle(ctx context.Context, m store.AgentMessage) error {
	switch m.Kind {
	case wire.KindHWReport:
		r, err := wire.Decode[wire.HWReport](m.Data)
		if err != nil {
			return store.Permanent(err)
		}
		return s.hwReport(ctx, m, r)
	case wire.KindVersionInstalled:
		v, err := wire.Decode[wire.VersionInstalled](m.Data)
		if err != nil {
			return store.Permanent(err)
		}
		return s.versionInstalled(ctx, m, v)
	case wire.KindStatus:
		st, err := wire.Decode[wire.Status](m.Data)
		if err != nil {
			return store.Permanent(err)
		}
		return s.status(ctx, m, st)
	}
	return store.Permanent(fmt.Errorf("unexpected %s message", m.Kind))
}

func (s *Service) hwReport(ctx context.Context, m store.AgentMessage, r wire.HWReport) error {
	before, rec, err := s.store.ReadDevice(ctx, m.Device)
	if err != nil {
		return err
	}
	if err := s.register(ctx, m, before); err != nil {
		return err
	}
	if hardwareKnown(before.Hardware) {
		if onlyChurn(before.Hardware, r.Hardware) && before.AgentVersion == r.AgentVersion && maps.Equal(before.Labels, fleet.Labels(r.Labels)) {
			s.log.Debug("interface churn only: record kept as it was", "device", m.Device)
			return nil
		}
		if changed := hardwareChanges(before.Hardware, r.Hardware); len(changed) > 0 {
			e := fleet.Event{
				Time: m.Time, Device: m.Device, Event: fleet.EventHardwareChanged,
				Version: before.Version, Detail: strings.Join(changed, ", "),
			}
			if err := s.store.AppendEvent(ctx, e, m.ID+"/hardware_changed"); err != nil {
				return err
			}
			s.log.Info("hardware changed", "device", m.Device, "fields", e.Detail)
		}
	}
	_, _, err = s.store.UpdateDeviceFrom(ctx, m.Device, rec, func(d *fleet.Device) error {
		seen(d, m)
		d.Hostname = r.Hardware.Hostname
		d.Hardware = r.Hardware
		d.AgentVersion = r.AgentVersion
		d.Labels = r.Labels
		return nil
	})
	return err
}

func (s *Service) versionInstalled(ctx context.Context, m store.AgentMessage, v wire.VersionInstalled) error {
	before, rec, err := s.store.ReadDevice(ctx, m.Device)
	if err != nil {
		return err
	}
	if err := s.register(ctx, m, before); err != nil {
		return err
	}
	if !before.FirstSeen.IsZero() && before.Version == v.Version && (v.PreviousVersion == "" || v.PreviousVersion == before.PreviousVersion) {
		// What every agent says each time it connects: an fsynced write
		// of nothing but a later LastSeen (which presence keeps) is
		// 10,000 of them when a fleet reconnects to a restarted server.
		s.log.Debug("version unchanged: record kept as it was", "device", m.Device)
		return nil
	}
	_, _, err = s.store.UpdateDeviceFrom(ctx, m.Device, rec, func(d *fleet.Device) error {
		seen(d, m)
		switch {
		case v.Version != d.Version && v.PreviousVersion == "":
			d.PreviousVersion = d.Version
		case v.PreviousVersion != "":
			d.PreviousVersion = v.PreviousVersion
		}
		d.Version = v.Version
		return nil
	})
	if err == nil {
		s.log.Debug("version", "device", m.Device, "version", v.Version)
	}
	return err
}

func (s *Service) status(ctx context.Context, m store.AgentMessage, st wire.Status) error {
	before, rec, err := s.store.ReadDevice(ctx, m.Device)
	if err != nil {
		return err
	}
	if err := s.register(ctx, m, before); err != nil {
		return err
	}
	var took time.Duration // of an install this status finishes
	_, _, err = s.store.UpdateDeviceFrom(ctx, m.Device, rec, func(d *fleet.Device) error {
		took = 0
		in, prev := d.Install, d.Install
		if in != nil && in.Updated.After(m.Time) {
			return store.ErrUnchanged // an older status, redelivered late
		}
		seen(d, m)
		if in == nil || startsInstall(*in, st) {
			in = &fleet.Install{OfferID: st.OfferID, Version: st.Version, Started: m.Time}
		} else {
			c := *in
			in = &c
		}
		in.State = st.State
		in.BytesDone, in.BytesTotal = st.BytesDone, st.BytesTotal
		// The agent's error may quote its download link: the signature
		// in it is a credential until it expires, and no page or API
		// answer should show it.
		in.Detail, in.Output = downloadlink.Redact(st.Detail), downloadlink.Redact(st.Output)
		in.Updated = m.Time
		d.Install = in
		if finished(st.State) && !(prev != nil && prev.Started.Equal(in.Started) && finished(prev.State)) {
			took = m.Time.Sub(in.Started) // the first report of this end
		}
		return nil
	})
	if err == nil && took > 0 {
		s.metrics.InstallTook(string(st.State), took.Seconds())
	}
	return err
}

// finished reports whether an install in state st has ended.
func finished(st wire.State) bool { return st == wire.StateInstalled || st == wire.StateFailed }

// startsInstall reports whether st begins a new install rather than
// continuing in: a step that starts a download, or another offer or
// version.
func startsInstall(in fleet.Install, st wire.Status) bool {
	if st.State == wire.StateDownloading && !st.Progress {
		return true
	}
	if st.OfferID != in.OfferID {
		return true
	}
	c, err := wire.CompareVersions(st.Version, in.Version)
	return err != nil || c != 0
}

// register records the first message inventory gets from a device. It
// goes by FirstSeen, not by whether a record exists: presence may have
// created one from a heartbeat before any report came.
func (s *Service) register(ctx context.Context, m store.AgentMessage, d fleet.Device) error {
	if !d.FirstSeen.IsZero() {
		return nil
	}
	e := fleet.Event{Time: m.Time, Device: m.Device, Event: fleet.EventRegistered}
	if err := s.store.AppendEvent(ctx, e, m.ID+"/registered"); err != nil {
		return err
	}
	s.log.Info("device registered", "device", m.Device)
	return nil
}

// seen moves the record's times forward to the message's; a late,
// redelivered message never moves them back.
func seen(d *fleet.Device, m store.AgentMessage) {
	if d.FirstSeen.IsZero() || m.Time.Before(d.FirstSeen) {
		d.FirstSeen = m.Time
	}
	if m.Time.After(d.LastSeen) {
		d.LastSeen = m.Time
	}
}
