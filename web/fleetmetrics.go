package web

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/metrics"
)

var (
	devicesDesc = prometheus.NewDesc("thinfleet_devices",
		"Devices the server knows, by presence: alive or not_alive.", []string{"presence"}, nil)
	versionsDesc = prometheus.NewDesc("thinfleet_devices_by_version",
		"Devices by installed version (\"none\" before a first install).", []string{"version"}, nil)
)

// fleetCollector counts the device gauges at each scrape from the hub's
// copy of the devices bucket, kept current by its watch: a scrape reads
// nothing from the store, whatever the size of the fleet (it read and
// decoded every record before, 10,000 of them at 10,000 devices). The
// state is in JetStream, not in any process, so these numbers are the
// fleet's whichever process serves them.
type fleetCollector struct{ s *Server }

func (c fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- devicesDesc
	ch <- versionsDesc
}

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t, err := c.s.hub.tally(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(devicesDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(t.alive), "alive")
	ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(t.notAlive), "not_alive")
	for v, n := range t.versions {
		ch <- prometheus.MustNewConstMetric(versionsDesc, prometheus.GaugeValue, float64(n), v)
	}
}

// fleetTally is what the device gauges count.
type fleetTally struct {
	alive, notAlive int
	versions        map[string]int // "none" before a first install
}

func (t *fleetTally) add(d *fleet.Device) {
	if d.Alive {
		t.alive++
	} else {
		t.notAlive++
	}
	v := d.Version
	if v == "" {
		v = "none"
	}
	t.versions[v]++
}

// handleMetrics serves the process's own metrics (Options.Gatherer: the
// Go runtime and the process, offers, installs, drops, HTTP durations)
// with the fleet's device gauges and the broker's connection and message
// counts, read at each scrape.
func (s *Server) handleMetrics() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(fleetCollector{s}, metrics.BrokerCollector{Conn: s.opts.Store.JetStream().Conn()})
	gs := prometheus.Gatherers{reg}
	if s.opts.Gatherer != nil {
		gs = append(gs, s.opts.Gatherer)
	}
	return promhttp.HandlerFor(gs, promhttp.HandlerOpts{})
}
