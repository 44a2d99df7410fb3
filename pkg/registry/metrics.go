package registry

import "github.com/prometheus/client_golang/prometheus"

// metrics are per-server gauges; nil-safe so tests can skip them.
type metrics struct {
	up, available, provisioned, volumes, snapshots *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	g := func(name, help string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"server"})
		reg.MustRegister(v)
		return v
	}
	return &metrics{
		up:          g("dots_server_up", "1 when the storage server answered its last probe."),
		available:   g("dots_server_available_bytes", "Free bytes in the server's pool."),
		provisioned: g("dots_server_provisioned_bytes", "Sum of the capacities of the server's volumes."),
		volumes:     g("dots_server_volumes", "Volumes on the server."),
		snapshots:   g("dots_server_snapshots", "Snapshots on the server."),
	}
}

func (m *metrics) observe(server string, st Status) {
	if m == nil {
		return
	}
	up := 0.0
	if st.Healthy {
		up = 1
		m.available.WithLabelValues(server).Set(float64(st.Available))
		m.provisioned.WithLabelValues(server).Set(float64(st.Provisioned))
		m.volumes.WithLabelValues(server).Set(float64(st.Volumes))
		m.snapshots.WithLabelValues(server).Set(float64(st.Snapshots))
	}
	m.up.WithLabelValues(server).Set(up)
}

func (m *metrics) forget(server string) {
	if m == nil {
		return
	}
	for _, v := range []*prometheus.GaugeVec{m.up, m.available, m.provisioned, m.volumes, m.snapshots} {
		v.DeleteLabelValues(server)
	}
}
