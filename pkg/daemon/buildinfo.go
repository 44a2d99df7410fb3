package daemon

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dots-csi/dots/pkg/version"
)

// revision is the git commit, set at link time by the Makefile
// (-X github.com/dots-csi/dots/pkg/daemon.revision=...).
var revision string

// Revision is the git commit the binary was built from: the one the
// linker was given, else the one the Go toolchain stamped ("-dirty" when
// the tree had changes), else "unknown" (go test, -buildvcs=false without
// the linker flag).
func Revision() string {
	if revision != "" {
		return revision
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// buildInfo is dots_build_info: one series, always 1, whose labels say
// which build runs (join it on instance to tell what every daemon runs).
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "dots_build_info",
		Help:        "The build of this daemon: version (set at link time), git revision and Go version; always 1.",
		ConstLabels: prometheus.Labels{"version": version.Version, "revision": Revision(), "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}
