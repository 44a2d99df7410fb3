package replicator

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Failure reasons of dots_replication_failures_total.
const (
	reasonUnreachable = "unreachable" // the replica's server did not answer
	reasonStale       = "stale"       // the replica holds a newer generation
	reasonSend        = "send"        // zfs send, the stream or zfs recv failed
	reasonSnapshot    = "snapshot"    // the replication snapshot could not be taken
	reasonStartup     = "startup"     // no replica confirmed a primary at start-up
)

// metrics of one server's replication.
type metrics struct {
	lag      *prometheus.GaugeVec
	sent     *prometheus.CounterVec
	failures *prometheus.CounterVec
	duration prometheus.Histogram
	waiting  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dots_replica_lag_seconds",
			Help: "Age of the newest replication snapshot each replica of a primary on this server holds (now minus its creation), by volume and replica server.",
		}, []string{"volume", "server"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dots_replication_bytes_sent_total",
			Help: "Bytes of zfs send streams sent to each replica server.",
		}, []string{"server"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dots_replication_failures_total",
			Help: "Failed replication steps, by replica server and reason (unreachable, stale, send, snapshot, startup).",
		}, []string{"server", "reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dots_replication_seconds",
			Help:    "Duration of one replication step to one replica (State, zfs send, stream, zfs recv, prune).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dots_replication_unconfirmed_primaries",
			Help: "Replicated primaries not served because no replica has yet confirmed that no newer generation exists (start-up rule).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.lag, m.sent, m.failures, m.duration, m.waiting)
	}
	return m
}

// forget drops a volume's lag series (it is no longer a replicated
// primary here).
func (m *metrics) forget(volume string, servers []string) {
	for _, s := range servers {
		m.lag.DeleteLabelValues(volume, s)
	}
}
