// Package metrics holds thinfleet's Prometheus metrics. New registers them
// on the registry it is given, which the process's /metrics serves; no
// metric is a package global, so two servers in one process (tests) keep
// apart. Every name thinfleet defines starts with thinfleet_; the Go
// runtime's and the process's keep their standard go_* and process_*
// names (NewRegistry), so stock Go dashboards work.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns a registry with the Go runtime's and the process's
// collectors, under their standard names, for New and /metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Metrics are thinfleet's counters, gauges and histograms. A nil
// *Metrics is valid and counts nothing, for parts built without one.
type Metrics struct {
	dropped         *prometheus.CounterVec
	offersSent      prometheus.Counter
	installs        *prometheus.CounterVec
	installDuration *prometheus.HistogramVec
	jetStreamFaults prometheus.Counter
	catalogRefused  prometheus.Gauge
	catalogReleases prometheus.Gauge
	httpDuration    *prometheus.HistogramVec
	rollout         rollout
}

// New makes thinfleet's metrics and registers them on reg; it panics if
// reg holds them already (one Metrics per registry).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thinfleet_messages_dropped_total",
			Help: "Messages refused on receipt, by message kind and reason.",
		}, []string{"kind", "reason"}),
		offersSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thinfleet_offers_sent_total",
			Help: "Update offers published to devices.",
		}),
		installs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thinfleet_installs_total",
			Help: "Finished installs reported by agents, by result.",
		}, []string{"result"}),
		installDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "thinfleet_install_duration_seconds",
			Help:    "Time from an install's first reported step to its end, by result.",
			Buckets: []float64{1, 2, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"result"}),
		jetStreamFaults: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thinfleet_jetstream_write_faults_total",
			Help: "JetStream store errors the broker logged (full disk, no descriptors): the broker is not ready and restarts once the cause is gone.",
		}),
		catalogRefused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "thinfleet_catalog_refused_zips",
			Help: "Zips in the updates folder that the catalog refused.",
		}),
		catalogReleases: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "thinfleet_catalog_releases",
			Help: "Valid releases in the catalog.",
		}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "thinfleet_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern, method and status code. Event streams are left out.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method", "code"}),
	}
	reg.MustRegister(m.dropped, m.offersSent, m.installs, m.installDuration,
		m.jetStreamFaults, m.catalogRefused, m.catalogReleases, m.httpDuration)
	m.rollout = newRollout(reg)
	return m
}

// Dropped counts one refused message.
func (m *Metrics) Dropped(kind, reason string) {
	if m == nil {
		return
	}
	if kind == "" {
		kind = "unknown"
	}
	m.dropped.WithLabelValues(kind, reason).Inc()
}

// OfferSent counts an update offer published to a device.
func (m *Metrics) OfferSent() {
	if m != nil {
		m.offersSent.Inc()
	}
}

// Installed counts a finished install by result (installed, failed).
func (m *Metrics) Installed(result string) {
	if m != nil {
		m.installs.WithLabelValues(result).Inc()
	}
}

// InstallTook observes how long a finished install took, from the first
// step an agent reported to the last, by result.
func (m *Metrics) InstallTook(result string, seconds float64) {
	if m != nil {
		m.installDuration.WithLabelValues(result).Observe(seconds)
	}
}

// JetStreamFault counts a JetStream store error the broker logged.
func (m *Metrics) JetStreamFault() {
	if m != nil {
		m.jetStreamFaults.Inc()
	}
}

// Catalog sets the numbers of valid releases and refused zips.
func (m *Metrics) Catalog(releases, refused int) {
	if m != nil {
		m.catalogReleases.Set(float64(releases))
		m.catalogRefused.Set(float64(refused))
	}
}

// HTTPRequest observes the time an HTTP request took to answer.
func (m *Metrics) HTTPRequest(route, method string, code int, seconds float64) {
	if m != nil {
		m.httpDuration.WithLabelValues(route, method, strconv.Itoa(code)).Observe(seconds)
	}
}
