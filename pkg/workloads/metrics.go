package workloads

import "github.com/prometheus/client_golang/prometheus"

// Metrics are this package's, on the controller's /metrics.
type Metrics struct {
	// PodsRestarted counts pods deleted because their volume's primary
	// moved (--restart-pods-on-promotion).
	PodsRestarted prometheus.Counter
	// Events counts the Events recorded, by reason (VolumeMoved,
	// OrphanedPool).
	Events *prometheus.CounterVec
	// Orphaned is how many server pool claims have no pod (their ordinal
	// is at or past the StatefulSet's replicas) while they may hold
	// volumes (alert on it: those volumes answer Unavailable).
	Orphaned prometheus.Gauge
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		PodsRestarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dots_pods_restarted_total",
			Help: "Pods deleted so that they mount a volume from its new primary (--restart-pods-on-promotion).",
		}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dots_workload_events_total",
			Help: "Events recorded on claims by the controller, by reason: VolumeMoved (a restart is needed, or was done), OrphanedPool.",
		}, []string{"reason"}),
		Orphaned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dots_server_orphaned_pools",
			Help: "Storage-server pool claims whose ordinal is at or past the server StatefulSet's replicas, holding volumes (or not known to be empty).",
		}),
	}
	reg.MustRegister(m.PodsRestarted, m.Events, m.Orphaned)
	return m
}
