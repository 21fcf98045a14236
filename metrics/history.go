package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	// HistoryAppendErrors counts history appends that failed and were
	// tried again (or, at shutdown, given up: HistoryAppendsLost).
	HistoryAppendErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "thinfleet_history_append_errors_total",
		Help: "History appends JetStream did not acknowledge, each tried again.",
	})
	// HistoryAppendsLost counts history appends still unacknowledged when
	// their service stopped and its shutdown deadline passed.
	HistoryAppendsLost = promauto.NewCounter(prometheus.CounterOpts{
		Name: "thinfleet_history_appends_lost_total",
		Help: "History appends given up at shutdown, unacknowledged.",
	})
	// HistoryAppendsPending is how many history appends are on their way.
	HistoryAppendsPending = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "thinfleet_history_appends_pending",
		Help: "History appends sent and not yet acknowledged.",
	})
	// InstallRetries counts the offers that try a failed install again
	// without an operator.
	InstallRetries = promauto.NewCounter(prometheus.CounterOpts{
		Name: "thinfleet_install_retries_total",
		Help: "Offers that automatically try again an install that failed.",
	})
	// HeldBack counts devices held back after too many failed installs.
	HeldBack = promauto.NewCounter(prometheus.CounterOpts{
		Name: "thinfleet_devices_held_back_total",
		Help: "Devices held back after failing the same release too often.",
	})
)
