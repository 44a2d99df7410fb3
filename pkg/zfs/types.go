package zfs

import (
	"time"

	"github.com/dots-csi/dots/pkg/api"
)

// SourceKind says what a volume was cloned from: the contract's kinds,
// stored in dots:source as they are.
type SourceKind = api.SourceKind

const (
	SourceNone     = api.SourceNone
	SourceSnapshot = api.SourceSnapshot
	SourceVolume   = api.SourceVolume
)

// Source names the snapshot or volume a volume was cloned from.
type Source struct {
	Kind SourceKind
	Name string // snapshot name or volume name
}

// VolumeSpec is what a caller asks for.
type VolumeSpec struct {
	Name       string            // the volume's name; also its dataset's last component
	Capacity   int64             // bytes, at least api.MinCapacity; becomes refquota
	Thick      bool              // also set refreservation = refquota
	Properties map[string]string // tunables, checked against the allow-list
	Source     Source            // optional clone source
	// Access is how the volume is exported (nil or SquashDefault: the
	// server's default squashing, decided at export time).
	Access *api.Access
	// Root is the owner and mode of a new volume's root directory; nil
	// leaves it as ZFS made it (clones keep their source's).
	Root *api.Owner
}

// Volume is a dataset as the pool reports it. Every field is read back from
// ZFS, so a restarted server sees exactly what it saw before.
type Volume struct {
	Name       string
	Dataset    string // full dataset name, POOL/dots/volumes/NAME
	Mountpoint string
	Capacity   int64 // refquota: what is enforced
	Used       int64 // referenced
	Available  int64
	Thick      bool
	// Reserved is the refreservation (Capacity when thick and whole) and
	// Recorded the capacity dots last recorded (dots:capacity): an
	// expansion converges them (see ExpandVolume).
	Reserved int64
	Recorded int64
	// Mounted is whether the dataset is mounted at Mountpoint. A volume
	// that is not is never exported.
	Mounted    bool
	Source     Source
	Properties map[string]string // the allow-listed tunables set locally
	ExportID   uint32            // stable NFS export id, allocated at creation
	CreatedAt  time.Time
	// Squash, AnonUID and AnonGID say how the export maps users
	// (SquashDefault: the server's default).
	Squash           api.Squash
	AnonUID, AnonGID uint32
	// Published lists the nodes the volume is published to: in per-node
	// export mode, the only clients its export admits.
	Published []Publication
	// Generation is raised by each promotion (dots:generation; 1 when
	// absent); Replicas and ReplInterval say where and how often a
	// primary replicates (none: an unreplicated volume).
	Generation   uint64
	Replicas     []api.Peer
	ReplInterval time.Duration
	// ReplLatest is the newest replication snapshot the volume has and
	// ReplLatestTime the time its name carries ("": none).
	ReplLatest     string
	ReplLatestTime time.Time
}

// Snapshot is a ZFS snapshot of a volume.
type Snapshot struct {
	Name         string // the snapshot's name, unique in the pool
	SourceVolume string // name of the volume it was taken of
	Dataset      string // full ZFS name, DATASET@NAME
	Size         int64  // referenced bytes: what a restore will hold
	CreatedAt    time.Time
	Group        string // the group snapshot it was taken with; "" for none
}

// Capacity of the pool in bytes.
type Capacity struct {
	Size      int64
	Used      int64
	Available int64
}
