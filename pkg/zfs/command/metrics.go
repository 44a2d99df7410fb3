package command

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	commands *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	stuck    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dots_zfs_commands_total",
			Help: "zfs and zpool commands run, by tool, subcommand and outcome (ok, error, timeout, canceled).",
		}, []string{"tool", "subcommand", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dots_zfs_command_duration_seconds",
			Help:    "Duration of zfs and zpool commands, by tool and subcommand.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}, []string{"tool", "subcommand"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dots_zfs_commands_in_flight",
			Help: "zfs and zpool commands running now.",
		}),
		stuck: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dots_zfs_commands_stuck",
			Help: "zfs and zpool commands running longer than --zfs-stuck-after at the last health check.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.commands, m.duration, m.inFlight, m.stuck)
	}
	return m
}

func (m *metrics) done(c Cmd, outcome string, d time.Duration) {
	m.commands.WithLabelValues(c.Tool, c.Subcommand(), outcome).Inc()
	if d > 0 {
		m.duration.WithLabelValues(c.Tool, c.Subcommand()).Observe(d.Seconds())
	}
}
