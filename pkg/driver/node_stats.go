package driver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/mounter"
)

// Stats and health take no volume lock: they only read, kubelet polls them,
// and a call waiting on a dead server must not turn the unpublish that would
// clean it up into Aborted.

// NodeGetVolumeStats reports bytes and inodes of the mount at volume_path;
// over NFS a dataset reports its refquota as its size. A stale or hung
// mount answers Unavailable within the stats timeout instead of hanging;
// NodeGetVolumeHealth says what is wrong.
func (s *NodeServer) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	id, path := req.GetVolumeId(), req.GetVolumePath()
	if err := required("volume_id", id, "volume_path", path); err != nil {
		return nil, err
	}
	path, err := s.statsPath(ctx, id, "volume_path", path)
	if err != nil {
		return nil, err
	}
	if staging := req.GetStagingTargetPath(); staging != "" {
		// Unused, but refused all the same outside the kubelet directory.
		if _, err := s.statsPath(ctx, id, "staging_target_path", staging); err != nil {
			return nil, err
		}
	}
	u, err := s.m.Stats(ctx, path)
	if err != nil {
		if errors.Is(err, mounter.ErrNotFound) || errors.Is(err, mounter.ErrNotMountPoint) {
			// NotFound, as the spec asks, where the table says
			// FailedPrecondition for a path that is not a mount point.
			return nil, fmt.Errorf("%w: volume %s is not mounted at %s: %v", errNotFound, id, path, err)
		}
		return nil, fmt.Errorf("stats of volume %s at %s: %w", id, path, err)
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: u.TotalBytes, Available: u.AvailableBytes, Used: u.UsedBytes},
		{Unit: csi.VolumeUsage_INODES, Total: u.TotalInodes, Available: u.AvailableInodes, Used: u.UsedInodes},
	}}, nil
}

// statsPath confines a path of a stats request. Outside the kubelet
// directory it is NotFound, as the spec (and csi-sanity) ask of a path the
// volume is not mounted at, where other calls answer InvalidArgument.
func (s *NodeServer) statsPath(ctx context.Context, id, what, p string) (string, error) {
	clean, err := s.m.ConfinePath(ctx, what, p)
	if errors.Is(err, api.ErrInvalid) {
		return "", fmt.Errorf("%w: volume %s is not mounted at %s: %v", errNotFound, id, p, err)
	}
	return clean, err
}

// Reasons reported by NodeGetVolumeHealth.
const (
	ReasonStaleMount    = "StaleMount"
	ReasonNotResponding = "NotResponding"
	ReasonNotMounted    = "NotMounted"
	ReasonCheckFailed   = "CheckFailed"
)

// NodeGetVolumeHealth checks the given paths, or those this plugin staged
// and published the volume at, within the stats timeout each, and that the
// volume's NFS server accepts connections (serverHealth).
func (s *NodeServer) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	id := req.GetVolumeId()
	if err := required("volume_id", id); err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range []struct{ name, path string }{
		{"staging_target_path", req.GetStagingTargetPath()}, {"volume_publish_path", req.GetVolumePublishPath()},
	} {
		if f.path == "" {
			continue
		}
		p, err := s.m.ConfinePath(ctx, f.name, f.path)
		if err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		paths = s.paths.of(id)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: volume %s is not staged or published on this node", errNotFound, id)
	}
	health := &csi.VolumeHealth{VolumeId: id}
	seen := map[string]bool{}
	for _, p := range paths {
		err := s.m.Check(ctx, p)
		if err == nil {
			continue
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		st, reason := healthOf(err)
		if key := st.String() + "/" + reason; !seen[key] {
			// One entry per (status, reason), as the spec requires.
			seen[key] = true
			health.HealthStatuses = append(health.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
				Status: st, Reason: reason, Message: err.Error(),
			})
		}
	}
	if e := s.serverHealth(ctx, id); e != nil {
		health.HealthStatuses = append(health.HealthStatuses, e)
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: health}, nil
}

func healthOf(err error) (csi.VolumeHealthErrorType, string) {
	switch {
	case errors.Is(err, mounter.ErrStale):
		return csi.VolumeHealthErrorType_INACCESSIBLE, ReasonStaleMount
	case errors.Is(err, mounter.ErrTimeout):
		return csi.VolumeHealthErrorType_INACCESSIBLE, ReasonNotResponding
	case errors.Is(err, mounter.ErrNotFound), errors.Is(err, mounter.ErrNotMountPoint):
		return csi.VolumeHealthErrorType_INACCESSIBLE, ReasonNotMounted
	}
	return csi.VolumeHealthErrorType_DEGRADED, ReasonCheckFailed
}

// volumePaths remembers where this plugin staged and published each volume,
// only so NodeGetVolumeHealth can answer when the CO gives a volume ID
// without paths. It is in memory on purpose: after a restart the CO's paths
// are used, and nothing else depends on it (the single-writer rule reads the
// mount table).
type volumePaths struct {
	mu   sync.Mutex
	vols map[string]*stagedVolume
}

type stagedVolume struct {
	staging string
	server  string // host:port of its NFS server, "" when unknown
	targets map[string]struct{}
}

func newVolumePaths() *volumePaths {
	return &volumePaths{vols: make(map[string]*stagedVolume)}
}

func (v *volumePaths) get(id string) *stagedVolume {
	sv := v.vols[id]
	if sv == nil {
		sv = &stagedVolume{targets: make(map[string]struct{})}
		v.vols[id] = sv
	}
	return sv
}

func (v *volumePaths) stage(id, staging, server string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	sv := v.get(id)
	sv.staging, sv.server = filepath.Clean(staging), server
}

// server is the NFS server of a staged volume, "" when unknown.
func (v *volumePaths) server(id string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if sv := v.vols[id]; sv != nil {
		return sv.server
	}
	return ""
}

func (v *volumePaths) publish(id, staging, target string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	sv := v.get(id)
	sv.staging = filepath.Clean(staging)
	sv.targets[filepath.Clean(target)] = struct{}{}
}

func (v *volumePaths) unpublish(id, target string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if sv := v.vols[id]; sv != nil {
		delete(sv.targets, filepath.Clean(target))
	}
}

func (v *volumePaths) unstage(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.vols, id)
}

// of returns the staging path, then the targets in order.
func (v *volumePaths) of(id string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	sv := v.vols[id]
	if sv == nil {
		return nil
	}
	var out []string
	if sv.staging != "" {
		out = append(out, sv.staging)
	}
	targets := make([]string, 0, len(sv.targets))
	for t := range sv.targets {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	return append(out, targets...)
}
