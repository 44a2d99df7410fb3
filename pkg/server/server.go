// Package server is a dots storage server's API: the CSI Identity and
// Controller services for the one ZFS pool it owns, with every volume
// exported over NFS. The cluster controller (pkg/driver) speaks CSI to each
// server and routes between them, so a server is a complete CSI controller
// for its own pool and can be tested with csi-sanity on its own.
package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/health"
	"github.com/dots-csi/dots/pkg/lockset"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/replication"
	"github.com/dots-csi/dots/pkg/version"
	"github.com/dots-csi/dots/pkg/zfs"
)

// Pool is what the server needs of its ZFS pool (*zfs.Pool).
type Pool interface {
	// Capacity is the pool's space as last read, less what the server's
	// creates reserved since (no command); RefreshCapacity reads it now.
	Capacity(ctx context.Context) (zfs.Capacity, error)
	RefreshCapacity(ctx context.Context) (zfs.Capacity, error)
	CreateVolume(ctx context.Context, spec zfs.VolumeSpec) (*zfs.Volume, error)
	GetVolume(ctx context.Context, name string) (*zfs.Volume, error)
	ListVolumes(ctx context.Context) ([]*zfs.Volume, error)
	ExpandVolume(ctx context.Context, name string, capacity int64) (*zfs.Volume, error)
	// ModifyVolume changes a live volume's tunables and reservation.
	ModifyVolume(ctx context.Context, name string, m zfs.Modification) (*zfs.Volume, error)
	DeleteVolume(ctx context.Context, name string) error
	// VolumePage and SnapshotPage serve listings in pages from the
	// pool's index: up to max entries (0: all) named after after, and
	// whether more follow.
	VolumePage(after string, max int) ([]*zfs.Volume, bool)
	SnapshotPage(after string, max int, source string) ([]*zfs.Snapshot, bool)
	// Counts are the index's totals (the manifest's counts).
	Counts() zfs.Counts
	// Reindex lists the pool and adopts it over the index (the reconciler).
	Reindex(ctx context.Context) (zfs.IndexDiff, error)
	CreateSnapshot(ctx context.Context, volume, name string) (*zfs.Snapshot, error)
	GetSnapshot(ctx context.Context, name string) (*zfs.Snapshot, error)
	ListSnapshots(ctx context.Context) ([]*zfs.Snapshot, error)
	DeleteSnapshot(ctx context.Context, name string) error
	// MountVolume mounts a live volume that is not mounted.
	MountVolume(ctx context.Context, name string) (*zfs.Volume, error)
	// SetPublished records the nodes a volume is published to.
	SetPublished(ctx context.Context, name string, pubs []zfs.Publication) (*zfs.Volume, error)
	// MountError says why a live volume is not mounted.
	MountError(name string) error
	// Audit reports what disagrees with the pool's layout.
	Audit(ctx context.Context) (zfs.Audit, error)
	// Name is the pool's name; State its health (zfs.HealthOnline, ...).
	Name() string
	State(ctx context.Context) (string, error)
}

// Options configure a storage server.
type Options struct {
	// Name of this server; reported in GetPluginInfo's manifest.
	Name string
	// DefaultCapacity is used when a request names no size.
	DefaultCapacity int64
	// PseudoRoot is the NFSv4 pseudo directory the exports live under.
	PseudoRoot string
	// Access says who exports admit: AccessPerNode (the default) or
	// AccessClients.
	Access ExportAccess
	// Clients are the NFS client networks: the outer bound of every
	// export, and what exports admit with AccessClients.
	Clients []netip.Prefix
	// Zone is the server's failure zone (the manifest's api.ManifestZone;
	// empty: none).
	Zone string
	// VolumesPath is where the volumes' datasets are mounted (the
	// manifest's api.ManifestVolumesPath).
	VolumesPath string
	// DefaultSquash is the squashing of volumes created without the
	// squash parameter, recorded with each (SquashDefault: follow the NFS
	// server's setting at export time).
	DefaultSquash api.Squash
}

// Server serves CSI Identity and Controller for one pool.
type Server struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedGroupControllerServer

	opts     Options
	pool     Pool
	exporter nfs.Exporter
	health   []health.Check
	locks    *lockset.LockSet
	monitor  *PoolMonitor // nil: the manifest asks the pool (tests)
	repl     Replication  // nil: no replication (tests)
}

// SetPoolMonitor makes the manifest report the pool's state as the monitor
// last read it, instead of asking zpool at each call. Call it before
// serving.
func (s *Server) SetPoolMonitor(m *PoolMonitor) { s.monitor = m }

// New returns a Server over pool, exporting through exporter. checks are
// what Probe runs: the pool, the NFS server, the ZFS commands.
func New(opts Options, pool Pool, exporter nfs.Exporter, checks ...health.Check) (*Server, error) {
	if opts.Name == "" {
		return nil, errors.New("server name is required")
	}
	if opts.DefaultCapacity <= 0 {
		return nil, errors.New("default capacity must be positive")
	}
	if opts.PseudoRoot == "" {
		opts.PseudoRoot = "/dots"
	}
	switch opts.Access {
	case "":
		opts.Access = AccessPerNode
	case AccessPerNode, AccessClients:
	default:
		return nil, fmt.Errorf("export access %q: want %s or %s", opts.Access, AccessPerNode, AccessClients)
	}
	return &Server{opts: opts, pool: pool, exporter: exporter, health: checks, locks: lockset.New()}, nil
}

// ExportFor is the NFS export of a volume.
func (s *Server) ExportFor(v *zfs.Volume) nfs.Export {
	e := nfs.Export{ID: v.ExportID, Path: v.Mountpoint, Pseudo: s.PseudoPath(v.Name)}
	e.Clients, e.ReadOnlyClients = s.clientsOf(v)
	e.Squash, e.AnonUID, e.AnonGID = squashOf(v)
	return e
}

// PseudoPath is where a volume appears in the NFSv4 namespace.
func (s *Server) PseudoPath(name string) string {
	return path.Join(s.opts.PseudoRoot, name)
}

// export exports a volume, mounting it first if it is not mounted: an
// export of an unmounted mountpoint would serve the parent's directory.
func (s *Server) export(ctx context.Context, v *zfs.Volume) error {
	if s.held(v.Name) {
		// A stale copy must never be served: the replication manager
		// exports it once a replica confirmed it.
		return fmt.Errorf("volume %s: %w", v.Name, replication.ErrNotConfirmed)
	}
	if !v.Mounted {
		mounted, err := s.pool.MountVolume(ctx, v.Name)
		if err != nil {
			return err
		}
		v = mounted
	}
	return s.exporter.Export(ctx, s.ExportFor(v))
}

// RestoreExports exports every mounted volume of the pool in one change: a
// restarted server serves exactly what it served before, with the same
// export ids. It returns the volumes it could not serve (not mounted); the
// reconciler tries them again.
func (s *Server) RestoreExports(ctx context.Context) (exported int, unmounted []string, err error) {
	vols, err := s.pool.ListVolumes(ctx)
	if err != nil {
		return 0, nil, err
	}
	exports := make([]nfs.Export, 0, len(vols))
	for _, v := range vols {
		if s.held(v.Name) {
			continue // exported once a replica confirms it
		}
		if !v.Mounted {
			unmounted = append(unmounted, v.Name)
			continue
		}
		exports = append(exports, s.ExportFor(v))
	}
	return len(exports), unmounted, s.exporter.SetExports(ctx, exports)
}

func volumeKey(name string) string   { return "volume/" + name }
func snapshotKey(name string) string { return "snapshot/" + name }

// GetPluginInfo identifies the server as part of the dots driver; its
// manifest also carries the pool's state, space and counts (see
// api.PoolInfo), which the controller's registry reads as the server's
// summary: from memory, no command per call.
func (s *Server) GetPluginInfo(ctx context.Context, _ *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	m := map[string]string{api.ManifestRole: "storage-server", api.ManifestServer: s.opts.Name}
	if s.opts.VolumesPath != "" {
		m[api.ManifestVolumesPath] = s.opts.VolumesPath
	}
	manifestZone(m, s.opts.Zone)
	if s.repl != nil {
		if n, err := s.repl.ReplicaCount(ctx); err == nil {
			m[api.ManifestReplicas] = strconv.Itoa(n)
		}
	}
	if info, err := s.poolInfo(ctx); err == nil {
		info.Manifest(m)
	} else {
		m[api.ManifestPool] = s.pool.Name()
		klog.V(2).InfoS("GetPluginInfo without pool figures", "pool", s.pool.Name(), "err", err)
	}
	return &csi.GetPluginInfoResponse{Name: version.DriverName, VendorVersion: version.Version, Manifest: m}, nil
}

// poolInfo is the pool's state as the pool monitor last read it (ReadAt
// says when), its space as the pool keeps it current (its reads and its
// own operations), and the index's counts. Before the monitor's first
// read, or without a monitor, the state is asked of zpool.
func (s *Server) poolInfo(ctx context.Context) (api.PoolInfo, error) {
	var state string
	var readAt time.Time
	if s.monitor != nil {
		state, readAt = s.monitor.State()
	}
	if readAt.IsZero() {
		var err error
		if state, err = s.pool.State(ctx); err != nil {
			return api.PoolInfo{}, err
		}
		readAt = time.Now()
	}
	c, err := s.pool.Capacity(ctx)
	if err != nil {
		return api.PoolInfo{}, err
	}
	n := s.pool.Counts()
	return api.PoolInfo{Pool: s.pool.Name(), Health: state, Size: c.Size, Used: c.Used, Available: c.Available, ReadAt: readAt,
		HasCounts: true, Volumes: n.Volumes, Snapshots: n.Snapshots, Provisioned: n.Provisioned}, nil
}

// GetPluginCapabilities advertises the controller service and online expansion.
func (s *Server) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: api.PluginCapabilities()}, nil
}

// Probe is ready when the pool and the NFS server are.
func (s *Server) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	for _, check := range s.health {
		if err := check(); err != nil {
			return nil, fmt.Errorf("%w: %v", api.ErrNotReady, err)
		}
	}
	return &csi.ProbeResponse{}, nil
}

// ControllerGetCapabilities lists what the server implements.
func (s *Server) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	// Every server can publish, whatever its export access: the
	// controller decides whether publishing is used.
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: api.ControllerCapabilities(true)}, nil
}
