// Package version holds the driver's identity: its CSI name and the build's
// version, set by the linker.
package version

// DriverName is the CSI driver name of dots. It is recorded in every PV and
// VolumeSnapshotContent: never change it.
const DriverName = "dots.csi.dev"

// Version is overwritten at build time with -ldflags -X.
var Version = "dev"
