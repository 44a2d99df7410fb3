package registry

import (
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
)

// Member is one storage server and the clients to reach it.
type Member struct {
	discovery.Server
	Controller csi.ControllerClient
	Group      csi.GroupControllerClient
	Identity   csi.IdentityClient
	// Replication is the server's replication service, on the same
	// connection (nil when the registry was given no way to make one).
	Replication api.ReplicationServer
	conn        *grpc.ClientConn
	// missingSince is when discovery stopped listing it (zero while
	// listed); guarded by the registry's lock.
	missingSince time.Time

	mu      sync.Mutex
	err     error // last probe result; nil when healthy
	checked time.Time
	// The figures placement reads: what the last probe read, plus what
	// this controller changed since (Account). available is the
	// manifest's (or GetCapacity's, for a server whose manifest has no
	// space); pool is the manifest's, zero when it says nothing.
	available int64
	pool      api.PoolInfo
	counts    counts
	// countsKnown: some manifest carried counts. Until one does (an older
	// server), counts hold only this controller's own accounting.
	countsKnown bool
	accounted   int // changes accounted since the last probe
	// downSince is when the server last went from healthy (or never
	// probed) to failing probes; zero while healthy.
	downSince time.Time
	// volumesPath and replicas are the manifest's ManifestVolumesPath and
	// ManifestReplicas.
	volumesPath string
	replicas    int
	zone        string // the manifest's api.ManifestZone
}

type counts struct {
	volumes, snapshots int
	provisioned        int64
}

// Status is a snapshot of a member's figures.
type Status struct {
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
	// Pool and PoolHealth name the server's pool and its state (ONLINE,
	// DEGRADED, ...); Size and Used are its root dataset's used +
	// available and used, exact, as read at the last probe (Used moved by
	// this controller's reservations since).
	Pool        string `json:"pool,omitempty"`
	PoolHealth  string `json:"poolHealth,omitempty"`
	Size        int64  `json:"sizeBytes"`
	Used        int64  `json:"usedBytes"`
	Available   int64  `json:"availableBytes"`   // free bytes in the pool
	Provisioned int64  `json:"provisionedBytes"` // sum of the volumes' capacities (may exceed the pool: thin)
	Volumes     int    `json:"volumes"`
	Snapshots   int    `json:"snapshots"`
	// CountsKnown is false for a server whose manifest carries no counts
	// (an older one): Volumes, Snapshots and Provisioned then count only
	// what this controller created and deleted there since it started.
	CountsKnown bool      `json:"countsKnown"`
	Checked     time.Time `json:"checked"` // when the last probe ended
	// Accounted is how many creates and deletes this controller counted
	// into the figures since that probe.
	Accounted int `json:"accountedSinceProbe"`
	// DownSince is when the server began failing its probes (zero while
	// it answers): automatic promotion counts from it.
	DownSince time.Time `json:"downSince,omitzero"`
	// VolumesPath is where the server mounts its volumes (local-bind
	// mounts reach a volume at VolumesPath/NAME); Replicas is how many
	// replicas of other servers' volumes it holds.
	VolumesPath string `json:"volumesPath,omitempty"`
	Replicas    int    `json:"replicas"`
	// Zone is the server's failure zone, as its manifest says (empty:
	// none): replicas go to other zones than their primary's.
	Zone string `json:"zone,omitempty"`
}

// Status returns the member's figures: its last probe and what this
// controller changed since.
func (m *Member) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{Healthy: m.err == nil && !m.checked.IsZero(), Available: m.available,
		Provisioned: m.counts.provisioned, Volumes: m.counts.volumes, Snapshots: m.counts.snapshots, CountsKnown: m.countsKnown,
		Checked: m.checked, Accounted: m.accounted,
		Pool: m.pool.Pool, PoolHealth: m.pool.Health, Size: m.pool.Size, Used: m.pool.Used,
		DownSince: m.downSince, VolumesPath: m.volumesPath, Replicas: m.replicas, Zone: m.zone}
	if m.err != nil {
		st.Error = m.err.Error()
	} else if m.checked.IsZero() {
		st.Error = "not probed yet"
	}
	return st
}

// Change is what one answer of the server changed: volumes and snapshots
// added (negative: removed), capacity promised, bytes reserved (taken from
// the free space: a thick volume's capacity).
type Change struct {
	Volumes, Snapshots   int
	Provisioned, Reserve int64
}

// Account counts a change the server just confirmed (a create or delete
// answered), so placements between probes see it; the next probe replaces
// the figures with what the server reports. A change racing a probe may
// be counted twice or not at all until the probe after: the figures are
// never off by more than one round's changes.
func (m *Member) Account(c Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts.volumes = max(0, m.counts.volumes+c.Volumes)
	m.counts.snapshots = max(0, m.counts.snapshots+c.Snapshots)
	m.counts.provisioned = max(0, m.counts.provisioned+c.Provisioned)
	m.available = max(0, m.available-c.Reserve)
	if m.pool.Size > 0 {
		// Keep the pool's figures adding up: size = used + available.
		m.pool.Available = m.available
		m.pool.Used = m.pool.Size - m.available
	}
	m.accounted++
}
