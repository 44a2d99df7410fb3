package server

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs"
)

// GroupPool is what group snapshots need of the pool (*zfs.Pool). It is
// apart from Pool so pools without it (unit-test fakes) still serve the
// rest; the server answers Unimplemented for groups then.
type GroupPool interface {
	CreateSnapshotGroup(ctx context.Context, group string, volumes []string) (*zfs.SnapshotGroup, error)
	GetSnapshotGroup(ctx context.Context, group string) (*zfs.SnapshotGroup, error)
	DeleteSnapshotGroup(ctx context.Context, group string) error
}

// errNoGroups: the server's pool cannot take group snapshots.
var errNoGroups = errors.New("group snapshots are not supported by this pool")

func groupKey(id string) string { return "group/" + id }

func (s *Server) groupPool() (GroupPool, error) {
	if g, ok := s.pool.(GroupPool); ok {
		return g, nil
	}
	return nil, errNoGroups
}

// GroupControllerGetCapabilities lists the group RPCs.
func (s *Server) GroupControllerGetCapabilities(context.Context, *csi.GroupControllerGetCapabilitiesRequest) (*csi.GroupControllerGetCapabilitiesResponse, error) {
	return &csi.GroupControllerGetCapabilitiesResponse{Capabilities: api.GroupControllerCapabilities()}, nil
}

// CreateVolumeGroupSnapshot snapshots the volumes in one transaction group
// (see zfs.Pool.CreateSnapshotGroup): ready at once.
func (s *Server) CreateVolumeGroupSnapshot(ctx context.Context, req *csi.CreateVolumeGroupSnapshotRequest) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	name, volumes := req.GetName(), req.GetSourceVolumeIds()
	if err := api.CheckGroupRequest(name, volumes); err != nil {
		return nil, err
	}
	gp, err := s.groupPool()
	if err != nil {
		return nil, err
	}
	id := api.IDFor(name)
	keys := []string{groupKey(id)}
	for _, v := range volumes {
		if _, err := s.getVolume(ctx, v); err != nil {
			return nil, err
		}
		keys = append(keys, volumeKey(v))
	}
	unlock, err := s.locks.Acquire(keys...)
	if err != nil {
		return nil, err
	}
	defer unlock()
	g, err := gp.CreateSnapshotGroup(ctx, id, volumes)
	if err != nil {
		return nil, err
	}
	klog.InfoS("Group snapshot ready", "group", name, "volumes", volumes)
	return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: csiGroup(g)}, nil
}

func csiGroup(g *zfs.SnapshotGroup) *csi.VolumeGroupSnapshot {
	out := &csi.VolumeGroupSnapshot{GroupSnapshotId: g.Name, ReadyToUse: true}
	for _, m := range g.Snapshots {
		snap := csiSnapshot(m)
		snap.GroupSnapshotId = g.Name
		out.Snapshots = append(out.Snapshots, snap)
		// One transaction group: the members' creation times agree; the
		// latest is the group's.
		if out.CreationTime == nil || m.CreatedAt.After(out.CreationTime.AsTime()) {
			out.CreationTime = timestamppb.New(m.CreatedAt)
		}
	}
	return out
}

// DeleteVolumeGroupSnapshot deletes the group's members; a missing group or
// member is success. snapshot_ids, when given, must not name a snapshot
// outside the group: the caller's idea of the group would be wrong.
func (s *Server) DeleteVolumeGroupSnapshot(ctx context.Context, req *csi.DeleteVolumeGroupSnapshotRequest) (*csi.DeleteVolumeGroupSnapshotResponse, error) {
	id := req.GetGroupSnapshotId()
	if err := api.Required("group_snapshot_id", id); err != nil {
		return nil, err
	}
	if api.ValidateID(id) != nil {
		return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
	}
	gp, err := s.groupPool()
	if err != nil {
		return nil, err
	}
	unlock, err := s.locks.Acquire(groupKey(id))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.checkMembers(ctx, id, req.GetSnapshotIds()); err != nil {
		return nil, err
	}
	if err := gp.DeleteSnapshotGroup(ctx, id); err != nil && !errors.Is(err, zfs.ErrNotFound) {
		return nil, err
	}
	klog.InfoS("Group snapshot deleted", "group", id)
	return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
}

// checkMembers refuses snapshot IDs that name a snapshot of another group
// (or of none); IDs of no snapshot are members deleted already.
func (s *Server) checkMembers(ctx context.Context, group string, ids []string) error {
	for _, sid := range ids {
		snap, err := s.getSnapshot(ctx, sid)
		if errors.Is(err, zfs.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if snap.Group != group {
			return fmt.Errorf("%w: snapshot_ids: snapshot %q is not a member of group snapshot %q", api.ErrInvalid, sid, group)
		}
	}
	return nil
}

// GetVolumeGroupSnapshot reports a group and its members.
func (s *Server) GetVolumeGroupSnapshot(ctx context.Context, req *csi.GetVolumeGroupSnapshotRequest) (*csi.GetVolumeGroupSnapshotResponse, error) {
	id := req.GetGroupSnapshotId()
	if err := api.Required("group_snapshot_id", id); err != nil {
		return nil, err
	}
	if api.ValidateID(id) != nil {
		return nil, fmt.Errorf("group snapshot %q: %w", id, zfs.ErrNotFound)
	}
	gp, err := s.groupPool()
	if err != nil {
		return nil, err
	}
	if err := s.checkMembers(ctx, id, req.GetSnapshotIds()); err != nil {
		return nil, err
	}
	g, err := gp.GetSnapshotGroup(ctx, id)
	if err != nil {
		return nil, err
	}
	if ids := req.GetSnapshotIds(); len(ids) > 0 {
		for _, m := range g.Snapshots {
			if !slices.Contains(ids, m.Name) {
				return nil, fmt.Errorf("%w: snapshot_ids: member %q of group snapshot %q is missing", api.ErrInvalid, m.Name, id)
			}
		}
	}
	return &csi.GetVolumeGroupSnapshotResponse{GroupSnapshot: csiGroup(g)}, nil
}
