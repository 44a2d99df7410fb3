// Package version holds the driver's identity: its CSI name and the build's
// version and source revision, set by the linker.
package version

import "runtime/debug"

// DriverName is the CSI driver name of dots. It is recorded in every PV and
// VolumeSnapshotContent: never change it.
const DriverName = "dots.csi.dev"

// Version is overwritten at build time with -ldflags -X.
var Version = "dev"

// revision is the source commit, set at build time with -ldflags -X
// (github.com/dots-csi/dots/pkg/version.revision); see Revision.
var revision = ""

// Revision is the commit the binary was built from: the one the linker
// stamped, else the one the Go toolchain recorded (with "-dirty" for a tree
// with changes), else "unknown".
func Revision() string {
	if revision != "" {
		return revision
	}
	return buildRevision(debug.ReadBuildInfo())
}

func buildRevision(info *debug.BuildInfo, ok bool) string {
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
