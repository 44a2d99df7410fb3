package failover

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the failover controller's, on the controller's /metrics.
type Metrics struct {
	// Failovers counts server pods force-deleted off a dead node, by
	// server (pod name).
	Failovers *prometheus.CounterVec
	// Seconds is how long each failed-over server's node had been down when
	// its pod was deleted: the failover delay plus the controller's own
	// latency.
	Seconds prometheus.Histogram
	// Pending is 1 for a server whose node is down while its failover
	// waits (alert on it: the server's volumes hang meanwhile).
	Pending *prometheus.GaugeVec
}

// NewMetrics registers the failover metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dots_server_failovers_total",
			Help: "Storage-server pods force-deleted off a node that was not ready for longer than --server-failover-after, by server.",
		}, []string{"server"}),
		Seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dots_server_failover_seconds",
			Help:    "Time from a server's node going not ready to its pod being force-deleted.",
			Buckets: []float64{5, 10, 20, 30, 45, 60, 90, 120, 300, 600},
		}),
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dots_server_failover_pending",
			Help: "1 while a storage server's node is not ready and its failover waits for --server-failover-after.",
		}, []string{"server"}),
	}
	reg.MustRegister(m.Failovers, m.Seconds, m.Pending)
	return m
}
