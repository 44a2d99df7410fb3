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
)

// PoolInfo is what a server's manifest says of its pool.
type PoolInfo struct {
	Pool                  string
	Health                string
	Size, Used, Available int64
	ReadAt                time.Time
}

// Manifest renders p into manifest keys.
func (p PoolInfo) Manifest(m map[string]string) {
	m[ManifestPool] = p.Pool
	m[ManifestPoolHealth] = p.Health
	m[ManifestSizeBytes] = strconv.FormatInt(p.Size, 10)
	m[ManifestUsedBytes] = strconv.FormatInt(p.Used, 10)
	m[ManifestAvailableBytes] = strconv.FormatInt(p.Available, 10)
	m[ManifestReadAt] = p.ReadAt.UTC().Format(time.RFC3339Nano)
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
	return p, true
}
