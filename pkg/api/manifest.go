package api

import (
	"strconv"
	"time"
)

// Keys of a storage server's GetPluginInfo manifest beyond "role" and
// "server": the pool's state and space when the question was asked, so
// the controller's server list is as fresh as its last probe. A server
// that cannot read its pool leaves them out; values are decimal bytes.
const (
	ManifestRole           = "role"
	ManifestServer         = "server"
	ManifestPool           = "pool"
	ManifestPoolHealth     = "poolHealth"     // ONLINE, DEGRADED, ...
	ManifestSizeBytes      = "sizeBytes"      // used + available of the pool's root dataset
	ManifestUsedBytes      = "usedBytes"      // used of the root dataset
	ManifestAvailableBytes = "availableBytes" // available of the root dataset: what a volume can get
	ManifestReadAt         = "readAt"         // RFC 3339: when the figures were read
	// The server's volumes: how many, and the sum of their capacities
	// (what placement has promised). With the space above they are the
	// summary the controller probes and places by, without a listing.
	ManifestVolumes          = "volumes"
	ManifestProvisionedBytes = "provisionedBytes"
	ManifestSnapshots        = "snapshots"
	// ManifestVolumesPath is the mountpoint of the server's volumes (the
	// local-bind mode reaches a candidate's copy there); ManifestReplicas
	// is how many replicas of other servers' volumes it holds.
	ManifestVolumesPath = "volumesPath"
	ManifestReplicas    = "replicas"
	// ManifestZone is the server's failure zone (absent: none): a
	// volume's replicas go to other zones than its primary's when they
	// can.
	ManifestZone = "zone"
)

// PoolInfo is what a server's manifest says of its pool.
type PoolInfo struct {
	Pool                  string
	Health                string
	Size, Used, Available int64
	ReadAt                time.Time
	// Counts: HasCounts is false when the manifest carries none.
	HasCounts          bool
	Volumes, Snapshots int
	Provisioned        int64
}

// Manifest renders p into manifest keys.
func (p PoolInfo) Manifest(m map[string]string) {
	m[ManifestPool] = p.Pool
	m[ManifestPoolHealth] = p.Health
	m[ManifestSizeBytes] = strconv.FormatInt(p.Size, 10)
	m[ManifestUsedBytes] = strconv.FormatInt(p.Used, 10)
	m[ManifestAvailableBytes] = strconv.FormatInt(p.Available, 10)
	m[ManifestReadAt] = p.ReadAt.UTC().Format(time.RFC3339Nano)
	if p.HasCounts {
		m[ManifestVolumes] = strconv.Itoa(p.Volumes)
		m[ManifestSnapshots] = strconv.Itoa(p.Snapshots)
		m[ManifestProvisionedBytes] = strconv.FormatInt(p.Provisioned, 10)
	}
}

// ParsePoolInfo reads a manifest; ok is false when it carries no pool
// figures (an older server, or one that could not read its pool).
func ParsePoolInfo(m map[string]string) (p PoolInfo, ok bool) {
	p.Pool, p.Health = m[ManifestPool], m[ManifestPoolHealth]
	var errs [3]error
	p.Size, errs[0] = strconv.ParseInt(m[ManifestSizeBytes], 10, 64)
	p.Used, errs[1] = strconv.ParseInt(m[ManifestUsedBytes], 10, 64)
	p.Available, errs[2] = strconv.ParseInt(m[ManifestAvailableBytes], 10, 64)
	for _, err := range errs {
		if err != nil {
			return PoolInfo{Pool: p.Pool, Health: p.Health}, false
		}
	}
	p.ReadAt, _ = time.Parse(time.RFC3339Nano, m[ManifestReadAt])
	v, err1 := strconv.Atoi(m[ManifestVolumes])
	sn, err2 := strconv.Atoi(m[ManifestSnapshots])
	pr, err3 := strconv.ParseInt(m[ManifestProvisionedBytes], 10, 64)
	if err1 == nil && err2 == nil && err3 == nil {
		p.HasCounts, p.Volumes, p.Snapshots, p.Provisioned = true, v, sn, pr
	}
	return p, true
}
