package metrics

import "github.com/prometheus/client_golang/prometheus"

// rollout are the metrics of the history appends and the automatic
// retries of failed installs.
type rollout struct {
	appendErrors   prometheus.Counter
	appendsLost    prometheus.Counter
	appendsPending prometheus.Gauge
	installRetries prometheus.Counter
	heldBack       prometheus.Counter
}

func newRollout(reg prometheus.Registerer) rollout {
	r := rollout{
		appendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thinfleet_history_append_errors_total",
			Help: "History appends JetStream did not acknowledge, each tried again.",
		}),
		appendsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thinfleet_history_appends_lost_total",
			Help: "History appends given up at shutdown, unacknowledged.",
		}),
		appendsPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "thinfleet_history_appends_pending",
			Help: "History appends sent and not yet acknowledged.",
		}),
		installRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thinfleet_install_retries_total",
			Help: "Offers that automatically try again an install that failed.",
		}),
		heldBack: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thinfleet_devices_held_back_total",
			Help: "Devices held back after failing the same release too often.",
		}),
	}
	reg.MustRegister(r.appendErrors, r.appendsLost, r.appendsPending, r.installRetries, r.heldBack)
	return r
}

// HistoryAppendError counts a history append that failed and is tried
// again.
func (m *Metrics) HistoryAppendError() {
	if m != nil {
		m.rollout.appendErrors.Inc()
	}
}

// HistoryAppendLost counts a history append given up at shutdown.
func (m *Metrics) HistoryAppendLost() {
	if m != nil {
		m.rollout.appendsLost.Inc()
	}
}

// HistoryAppendsPending moves the number of history appends on their way
// by delta.
func (m *Metrics) HistoryAppendsPending(delta float64) {
	if m != nil {
		m.rollout.appendsPending.Add(delta)
	}
}

// InstallRetry counts an offer that tries a failed install again.
func (m *Metrics) InstallRetry() {
	if m != nil {
		m.rollout.installRetries.Inc()
	}
}

// HeldBack counts a device held back after too many failed installs.
func (m *Metrics) HeldBack() {
	if m != nil {
		m.rollout.heldBack.Inc()
	}
}
