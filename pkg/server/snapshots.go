package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/zfs"
)

// CreateSnapshot takes a ZFS snapshot: O(1), ready at once.
func (s *Server) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	name, source := req.GetName(), req.GetSourceVolumeId()
	if err := api.Required("name", name); err != nil {
		return nil, err
	}
	if err := api.Required("source_volume_id", source); err != nil {
		return nil, err
	}
	if err := api.ValidateName(name); err != nil {
		return nil, err
	}
	id := api.IDFor(name)
	if _, err := s.getVolume(ctx, source); err != nil {
		return nil, err
	}
	unlock, err := s.locks.Acquire(snapshotKey(id), volumeKey(source))
	if err != nil {
		return nil, err
	}
	defer unlock()
	snap, err := s.pool.CreateSnapshot(ctx, source, id)
	switch {
	case errors.Is(err, zfs.ErrExists) && snap != nil:
		if snap.SourceVolume != source {
			return nil, fmt.Errorf("%w: snapshot %q exists for volume %q, not %q", zfs.ErrExists, name, snap.SourceVolume, source)
		}
	case err != nil:
		return nil, err
	default:
		klog.InfoS("Snapshot created", "snapshot", name, "volume", source, "size", snap.Size)
	}
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(snap)}, nil
}

func csiSnapshot(s *zfs.Snapshot) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:      s.Name,
		SourceVolumeId:  s.SourceVolume,
		SizeBytes:       max(s.Size, 1),
		CreationTime:    timestamppb.New(s.CreatedAt),
		ReadyToUse:      true,
		GroupSnapshotId: s.Group,
	}
}

// DeleteSnapshot deletes a snapshot; a missing one is success. Clones made
// from it keep working (pkg/zfs hides it until the last clone goes).
func (s *Server) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	name := req.GetSnapshotId()
	if err := api.Required("snapshot_id", name); err != nil {
		return nil, err
	}
	if api.ValidateID(name) != nil {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	unlock, err := s.locks.Acquire(snapshotKey(name))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.pool.DeleteSnapshot(ctx, name); err != nil && !errors.Is(err, zfs.ErrNotFound) {
		return nil, err
	}
	klog.InfoS("Snapshot deleted", "snapshot", name)
	return &csi.DeleteSnapshotResponse{}, nil
}

// GetSnapshot reports one snapshot.
func (s *Server) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	name := req.GetSnapshotId()
	if err := api.Required("snapshot_id", name); err != nil {
		return nil, err
	}
	snap, err := s.getSnapshot(ctx, name)
	if err != nil {
		return nil, err
	}
	return &csi.GetSnapshotResponse{Snapshot: csiSnapshot(snap)}, nil
}

func (s *Server) getSnapshot(ctx context.Context, name string) (*zfs.Snapshot, error) {
	if api.ValidateID(name) != nil {
		return nil, fmt.Errorf("snapshot %q: %w", name, zfs.ErrNotFound)
	}
	return s.pool.GetSnapshot(ctx, name)
}

// ListSnapshots lists by id, by source volume, or all, in name order, in
// pages served from the pool's index (see ListVolumes).
func (s *Server) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	after, err := csirpc.ParseToken(req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	if err := csirpc.CheckMaxEntries(req.GetMaxEntries()); err != nil {
		return nil, err
	}
	var snaps []*zfs.Snapshot
	more := false
	if id := req.GetSnapshotId(); id != "" {
		snap, err := s.getSnapshot(ctx, id)
		if errors.Is(err, zfs.ErrNotFound) {
			return &csi.ListSnapshotsResponse{}, nil
		}
		if err != nil {
			return nil, err
		}
		if src := req.GetSourceVolumeId(); src != "" && src != snap.SourceVolume {
			return &csi.ListSnapshotsResponse{}, nil
		}
		if after == "" || snap.Name > after {
			snaps = []*zfs.Snapshot{snap}
		}
	} else {
		snaps, more = s.pool.SnapshotPage(after, int(req.GetMaxEntries()), req.GetSourceVolumeId())
	}
	resp := &csi.ListSnapshotsResponse{}
	if more && len(snaps) > 0 {
		resp.NextToken = csirpc.TokenAfter(snaps[len(snaps)-1].Name)
	}
	for _, snap := range snaps {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(snap)})
	}
	return resp, nil
}
