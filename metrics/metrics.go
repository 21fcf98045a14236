// Package metrics holds thinfleet's Prometheus collectors. Every name
// starts with thinfleet_; they are registered with the default registry,
// which /metrics serves.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	dropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "thinfleet_messages_dropped_total",
		Help: "Messages refused on receipt, by message kind and reason.",
	}, []string{"kind", "reason"})

	// OffersSent counts update offers published to devices.
	OffersSent = promauto.NewCounter(prometheus.CounterOpts{
		Name: "thinfleet_offers_sent_total",
		Help: "Update offers published to devices.",
	})

	// Installs counts finished installs by result (installed, failed).
	Installs = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "thinfleet_installs_total",
		Help: "Finished installs reported by agents, by result.",
	}, []string{"result"})

	// CatalogRefused counts zips the catalog refused, by scan.
	JetStreamFaults = promauto.NewCounter(prometheus.CounterOpts{
		Name: "thinfleet_jetstream_write_faults_total",
		Help: "JetStream store errors the broker logged (full disk, no descriptors): the broker is not ready and restarts once the cause is gone.",
	})
	CatalogRefused = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "thinfleet_catalog_refused_zips",
		Help: "Zips in the updates folder that the catalog refused.",
	})

	// CatalogReleases is the number of valid releases.
	CatalogReleases = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "thinfleet_catalog_releases",
		Help: "Valid releases in the catalog.",
	})
)

// Dropped counts one refused message.
func Dropped(kind, reason string) {
	if kind == "" {
		kind = "unknown"
	}
	dropped.WithLabelValues(kind, reason).Inc()
}

// InstallDuration observes how long finished installs took, from the
// first step an agent reported to the last, by result.
var InstallDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "thinfleet_install_duration_seconds",
	Help:    "Time from an install's first reported step to its end, by result.",
	Buckets: []float64{1, 2, 5, 10, 30, 60, 120, 300, 600, 1800},
}, []string{"result"})

// The Go runtime's and the process's own metrics keep their usual names
// behind the thinfleet_ prefix, so that every name /metrics serves is
// thinfleet's.
func init() {
	prometheus.Unregister(collectors.NewGoCollector())
	prometheus.Unregister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	prometheus.WrapRegistererWithPrefix("thinfleet_", prometheus.DefaultRegisterer).MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}
