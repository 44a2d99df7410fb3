package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/lockset"
	"github.com/dots-csi/dots/pkg/mounter"
)

// NodeServer is the CSI Node service: it mounts a volume's export once per
// node at the staging path and bind mounts it into each pod's target path.
type NodeServer struct {
	csi.UnimplementedNodeServer
	nodeID string
	m      mounter.Mounter
	locks  *lockset.LockSet
	paths  *volumePaths
	// dial checks a volume's NFS server (NodeGetVolumeHealth).
	dial         func(ctx context.Context, addr string) error
	statsTimeout time.Duration
	// discover lists the storage servers (nil: no discovery configured),
	// asked only when no server of a volume context serves the volume.
	discover discovery.Source
}

// NewNodeServer returns the node service for opts, mounting through m
// (mounter.New(opts.MounterConfig()) on a real node).
func NewNodeServer(opts NodeOptions, m mounter.Mounter) (*NodeServer, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("node server needs a mounter")
	}
	if m.Mode() != opts.MountMode {
		return nil, fmt.Errorf("mounter mode %s differs from --mount-mode=%s", m.Mode(), opts.MountMode)
	}
	if m.KubeletDir() != opts.KubeletDir {
		return nil, fmt.Errorf("mounter kubelet directory %s differs from --kubelet-dir=%s", m.KubeletDir(), opts.KubeletDir)
	}
	nodeID, err := opts.csiNodeID()
	if err != nil {
		return nil, err
	}
	discover, err := opts.discovery().Source()
	if err != nil {
		return nil, err
	}
	klog.InfoS("Node service", "nodeID", nodeID, "mountMode", opts.MountMode, "kubeletDir", opts.KubeletDir,
		"localBindRoots", opts.LocalBindRoots, "statsTimeout", opts.StatsTimeout, "unmountTimeout", opts.UnmountTimeout,
		"mountTryTimeout", opts.MountTryTimeout, "discovery", discover != nil)
	return &NodeServer{nodeID: nodeID, m: m, locks: lockset.New(), paths: newVolumePaths(), dial: dialTCP, statsTimeout: opts.StatsTimeout,
		discover: discover}, nil
}

// nodeCapabilities: STAGE_UNSTAGE so each volume is mounted once per node;
// GET_VOLUME_HEALTH is spec 1.13's replacement for the removed
// VOLUME_CONDITION and reports stale or hung mounts; VOLUME_MOUNT_GROUP
// has kubelet hand a pod's fsGroup to the plugin instead of chowning
// every file of the volume itself (which a squashed export refuses).
var nodeCapabilities = []csi.NodeServiceCapability_RPC_Type{
	csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
	csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
	csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
	csi.NodeServiceCapability_RPC_VOLUME_MOUNT_GROUP,
}

// NodeGetCapabilities implements csi.NodeServer.
func (s *NodeServer) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	caps := make([]*csi.NodeServiceCapability, 0, len(nodeCapabilities))
	for _, c := range nodeCapabilities {
		caps = append(caps, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// NodeGetInfo implements csi.NodeServer. There is no topology: every node
// reaches every storage server.
func (s *NodeServer) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: s.nodeID}, nil
}

// NodeStageVolume mounts the volume's export at the staging path.
func (s *NodeServer) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	if err := required("volume_id", id, "staging_target_path", staging); err != nil {
		return nil, err
	}
	vc := req.GetVolumeCapability()
	if err := validateCapability(vc); err != nil {
		return nil, err
	}
	vols, err := s.volumeFromContext(id, req.GetVolumeContext())
	if err != nil {
		return nil, err
	}
	if staging, err = s.m.ConfinePath(ctx, "staging_target_path", staging); err != nil {
		return nil, err
	}
	unlock, err := s.locks.Acquire(id)
	if err != nil {
		return nil, err
	}
	defer unlock()

	flags := vc.GetMount().GetMountFlags()
	used, err := s.stage(ctx, vols, staging, flags, readerOnly(vc))
	if err != nil {
		return nil, fmt.Errorf("stage volume %s at %s: %w", id, staging, err)
	}
	// The health check dials the server actually mounted, which with
	// candidates need not be the first listed.
	s.paths.stage(id, staging, nfsEndpoint(used))
	klog.InfoS("Volume staged", "volumeID", id, "stagingPath", staging, "mode", s.m.Mode(), "mountFlags", flags,
		"server", used.Server, "from", used.String(), "candidates", len(vols))
	return &csi.NodeStageVolumeResponse{}, nil
}

// NodeUnstageVolume unmounts the staging path and removes it.
func (s *NodeServer) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	err := s.unmountVolume(ctx, req.GetVolumeId(), "staging_target_path", req.GetStagingTargetPath(), "unstage",
		func(string) { s.paths.unstage(req.GetVolumeId()) })
	if err != nil {
		return nil, err
	}
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// NodePublishVolume bind mounts the staged volume at the target path.
func (s *NodeServer) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target, staging := req.GetVolumeId(), req.GetTargetPath(), req.GetStagingTargetPath()
	if err := required("volume_id", id, "target_path", target); err != nil {
		return nil, err
	}
	vc := req.GetVolumeCapability()
	if err := validateCapability(vc); err != nil {
		return nil, err
	}
	if staging == "" {
		return nil, fmt.Errorf("%w: staging_target_path is required: this plugin stages volumes (STAGE_UNSTAGE_VOLUME)", errNotStaged)
	}
	staging, err := s.m.ConfinePath(ctx, "staging_target_path", staging)
	if err != nil {
		return nil, err
	}
	if target, err = s.m.ConfinePath(ctx, "target_path", target); err != nil {
		return nil, err
	}
	unlock, err := s.locks.Acquire(id)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if vc.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		if err := s.checkSingleWriter(id, staging, target); err != nil {
			return nil, err
		}
	}
	readOnly := req.GetReadonly() || readerOnly(vc)
	gid, err := mountGroup(vc)
	if err != nil {
		return nil, err
	}
	if err := s.m.Publish(ctx, staging, target, readOnly); err != nil {
		return nil, fmt.Errorf("publish volume %s at %s: %w", id, target, err)
	}
	if gid != nil && !readOnly {
		if err := s.m.ShareGroup(ctx, target, *gid); err != nil {
			// Left published: kubelet retries, and unpublishes if the pod goes.
			return nil, fmt.Errorf("volume %s: fsGroup %d: %w", id, *gid, err)
		}
	}
	s.paths.publish(id, staging, target)
	klog.InfoS("Volume published", "volumeID", id, "targetPath", target, "readOnly", readOnly)
	return &csi.NodePublishVolumeResponse{}, nil
}

// checkSingleWriter refuses a second target for a SINGLE_NODE_SINGLE_WRITER
// volume. The targets come from the mount table (binds of the staged
// mount), so the rule holds across restarts of the plugin.
func (s *NodeServer) checkSingleWriter(id, staging, target string) error {
	targets, err := s.m.PublishedTargets(staging)
	if err != nil {
		return err
	}
	for _, t := range targets {
		if t != filepath.Clean(target) {
			// FailedPrecondition, as the spec asks for a second writer.
			return status.Errorf(codes.FailedPrecondition,
				"volume %s has access mode SINGLE_NODE_SINGLE_WRITER and is already published at %s", id, t)
		}
	}
	return nil
}

// NodeUnpublishVolume unmounts the target path and removes it.
func (s *NodeServer) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	err := s.unmountVolume(ctx, req.GetVolumeId(), "target_path", req.GetTargetPath(), "unpublish",
		func(target string) { s.paths.unpublish(req.GetVolumeId(), target) })
	if err != nil {
		return nil, err
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// unmountVolume is what unstaging and unpublishing share: the path (the
// request's field) confined to the kubelet's directory, the volume's lock,
// the unmount (nothing mounted there is done already), then forget with
// the confined path.
func (s *NodeServer) unmountVolume(ctx context.Context, id, field, path, verb string, forget func(path string)) error {
	if err := required("volume_id", id, field, path); err != nil {
		return err
	}
	path, err := s.m.ConfinePath(ctx, field, path)
	if err != nil {
		return err
	}
	unlock, err := s.locks.Acquire(id)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.m.Unmount(ctx, path); err != nil {
		return fmt.Errorf("%s volume %s from %s: %w", verb, id, path, err)
	}
	forget(path)
	klog.InfoS("Volume "+verb+"ed", "volumeID", id, "path", path)
	return nil
}

// required checks pairs of (field name, value): each must be set.
func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := api.Required(pairs[i], pairs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// validateCapability accepts mount volumes in any known access mode.
func validateCapability(vc *csi.VolumeCapability) error {
	if vc == nil {
		return fmt.Errorf("%w: volume_capability is required", api.ErrInvalid)
	}
	return api.ValidateCapabilities([]*csi.VolumeCapability{vc})
}

// readerOnly reports an access mode that only reads.
func readerOnly(vc *csi.VolumeCapability) bool {
	switch vc.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return true
	}
	return false
}

// volumeFromContext reads what the controller put in the volume context:
// the locations to mount the volume from, in the order to try them. A
// context with api.ContextServers lists every server that may hold the
// volume (primary first); one without names its one server (volumes
// created before candidates existed). The keys the mount mode needs are
// required.
func (s *NodeServer) volumeFromContext(id string, vc map[string]string) ([]mounter.Volume, error) {
	if _, ok := vc[api.ContextServers]; ok {
		return s.candidatesFromContext(id, vc)
	}
	vol := mounter.Volume{
		ID:        id,
		Server:    vc[api.ContextServer],
		Address:   vc[api.ContextNFSAddress],
		Export:    vc[api.ContextExport],
		LocalPath: vc[api.ContextLocalPath],
	}
	if p, ok := vc[api.ContextNFSPort]; ok {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("%w: volume context %s=%q is not a port number", api.ErrInvalid, api.ContextNFSPort, p)
		}
		vol.Port = port
	}
	var needed []string
	switch s.m.Mode() {
	case mounter.ModeLocalBind:
		needed = []string{api.ContextLocalPath}
	default:
		needed = []string{api.ContextNFSAddress, api.ContextExport}
	}
	for _, k := range needed {
		if vc[k] == "" {
			return nil, fmt.Errorf("%w: volume context lacks %s, needed by mount mode %s", api.ErrInvalid, k, s.m.Mode())
		}
	}
	return []mounter.Volume{vol}, nil
}

// candidatesFromContext reads api.ContextServers. The export path is the
// volume's on every server (ContextExport); each candidate gives its
// server's address, port and, for local-bind, the dataset's path there.
func (s *NodeServer) candidatesFromContext(id string, vc map[string]string) ([]mounter.Volume, error) {
	var cands []api.Candidate
	if err := json.Unmarshal([]byte(vc[api.ContextServers]), &cands); err != nil {
		return nil, fmt.Errorf("%w: volume context %s is not a JSON list of servers: %v", api.ErrInvalid, api.ContextServers, err)
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("%w: volume context %s lists no server", api.ErrInvalid, api.ContextServers)
	}
	localBind := s.m.Mode() == mounter.ModeLocalBind
	if !localBind && vc[api.ContextExport] == "" {
		return nil, fmt.Errorf("%w: volume context lacks %s, needed by mount mode %s", api.ErrInvalid, api.ContextExport, s.m.Mode())
	}
	vols := make([]mounter.Volume, 0, len(cands))
	for i, c := range cands {
		if c.Port < 0 || c.Port > 65535 {
			return nil, fmt.Errorf("%w: volume context %s: server %d (%s) has port %d", api.ErrInvalid, api.ContextServers, i, c.Server, c.Port)
		}
		if (localBind && c.LocalPath == "") || (!localBind && c.Address == "") {
			need := "address"
			if localBind {
				need = "localPath"
			}
			return nil, fmt.Errorf("%w: volume context %s: server %d (%s) has no %s, needed by mount mode %s", api.ErrInvalid, api.ContextServers, i, c.Server, need, s.m.Mode())
		}
		vols = append(vols, mounter.Volume{ID: id, Server: c.Server, Address: c.Address, Port: c.Port,
			Export: vc[api.ContextExport], LocalPath: c.LocalPath})
	}
	return vols, nil
}

// mountGroup reads the fsGroup kubelet hands over (VOLUME_MOUNT_GROUP).
func mountGroup(vc *csi.VolumeCapability) (*uint32, error) {
	g := vc.GetMount().GetVolumeMountGroup()
	if g == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(g, 10, 32)
	if err != nil || n > 1<<31-1 {
		return nil, fmt.Errorf("%w: volume_mount_group %q is not a group id", api.ErrInvalid, g)
	}
	gid := uint32(n)
	return &gid, nil
}
