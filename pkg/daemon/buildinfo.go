package daemon

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dots-csi/dots/pkg/version"
)

// buildInfo is dots_build_info: one series, always 1, whose labels say
// which build runs (join it on instance to tell what every daemon runs).
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "dots_build_info",
		Help:        "The build of this daemon: version (set at link time), git revision and Go version; always 1.",
		ConstLabels: prometheus.Labels{"version": version.Version, "revision": version.Revision(), "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}
