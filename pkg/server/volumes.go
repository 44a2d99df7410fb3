package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/zfs"
)

// CreateVolume creates (or, for a repeated call, returns) a dataset and
// exports it.
func (s *Server) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if p := withoutReplicationParams(req.GetParameters()); len(p) != len(req.GetParameters()) {
		req = proto.CloneOf(req)
		req.Parameters = p
	}
	cv, err := api.ParseCreateVolume(req, s.opts.DefaultCapacity)
	if err != nil {
		return nil, err
	}
	// Normalized (recordsize=16K is stored as 16384), so a repeated request
	// compares equal to what the pool reports.
	props, err := zfs.ValidateProperties(cv.Params.Properties)
	if err != nil {
		return nil, err
	}
	spec := zfs.VolumeSpec{Name: cv.ID, Capacity: cv.Capacity, Thick: cv.Params.Thick, Properties: props,
		Source: zfs.Source{Kind: cv.Source.Kind, Name: cv.Source.ID}}
	access := cv.Params.Access
	if access.Squash == api.SquashDefault {
		access.Squash = s.opts.DefaultSquash
	}
	spec.Access = &access
	if spec.Source.Kind == zfs.SourceNone {
		// A clone's root is its source's: ownership applies to new,
		// empty volumes only.
		owner := access.RootOwner(access.Squash)
		spec.Root = &owner
	}
	keys := []string{volumeKey(cv.ID)}
	if spec.Source.Kind != zfs.SourceNone {
		keys = append(keys, sourceKey(spec.Source))
	}
	unlock, err := s.locks.Acquire(keys...)
	if err != nil {
		return nil, err
	}
	defer unlock()

	vol, err := s.pool.CreateVolume(ctx, spec)
	switch {
	case errors.Is(err, zfs.ErrExists) && vol != nil:
		if why := mismatch(vol, spec, req.GetCapacityRange()); why != "" {
			return nil, fmt.Errorf("%w: volume %q (id %s) exists with %s", zfs.ErrExists, cv.Name, cv.ID, why)
		}
	case errors.Is(err, zfs.ErrNotFound) && spec.Source.Kind != zfs.SourceNone:
		return nil, fmt.Errorf("source %s %q: %w", spec.Source.Kind, spec.Source.Name, zfs.ErrNotFound)
	case err != nil:
		return nil, err
	default:
		klog.InfoS("Volume created", "volume", cv.Name, "id", cv.ID, "capacity", vol.Capacity, "source", vol.Source.Name, "thick", vol.Thick)
	}
	// Exporting also on the repeated call heals a create whose export failed.
	if err := s.export(ctx, vol); err != nil {
		return nil, fmt.Errorf("exporting volume %s: %w", cv.Name, err)
	}
	return &csi.CreateVolumeResponse{Volume: s.csiVolume(vol, false)}, nil
}

// mismatch explains why an existing volume does not answer a repeated
// create, or returns "".
func mismatch(vol *zfs.Volume, spec zfs.VolumeSpec, r *csi.CapacityRange) string {
	if r == nil || (r.GetRequiredBytes() == 0 && r.GetLimitBytes() == 0) {
		if vol.Capacity != spec.Capacity {
			return fmt.Sprintf("capacity %d, not the default %d", vol.Capacity, spec.Capacity)
		}
	} else if !api.CapacityFits(vol.Capacity, r) {
		return fmt.Sprintf("capacity %d outside the requested range [%d, %d]", vol.Capacity, r.GetRequiredBytes(), r.GetLimitBytes())
	}
	if vol.Source != spec.Source {
		return fmt.Sprintf("content source %q %q, not %q %q", vol.Source.Kind, vol.Source.Name, spec.Source.Kind, spec.Source.Name)
	}
	if vol.Thick != spec.Thick {
		return fmt.Sprintf("thick=%t", vol.Thick)
	}
	if a := spec.Access; a != nil && a.Squash != api.SquashDefault &&
		(vol.Squash != a.Squash || (a.Squash != api.SquashNone && (vol.AnonUID != a.AnonUID || vol.AnonGID != a.AnonGID))) {
		return fmt.Sprintf("squash=%s anon=%d:%d", vol.Squash, vol.AnonUID, vol.AnonGID)
	}
	for k, v := range spec.Properties {
		if vol.Properties[k] != v {
			return fmt.Sprintf("%s=%q, not %q", k, vol.Properties[k], v)
		}
	}
	return ""
}

func sourceKey(src zfs.Source) string {
	if src.Kind == zfs.SourceSnapshot {
		return snapshotKey(src.Name)
	}
	return volumeKey(src.Name)
}

// csiVolume is a volume as CSI answers carry it. With used, its context
// also says how many bytes it holds now (ListVolumes, ControllerGetVolume;
// never CreateVolume, whose context the PV records).
func (s *Server) csiVolume(v *zfs.Volume, used bool) *csi.Volume {
	out := &csi.Volume{
		VolumeId:      v.Name,
		CapacityBytes: v.Capacity,
		VolumeContext: map[string]string{
			api.ContextExport:    s.PseudoPath(v.Name),
			api.ContextLocalPath: v.Mountpoint,
		},
	}
	if used {
		out.VolumeContext[api.ContextUsedBytes] = strconv.FormatInt(v.Used, 10)
		for k, val := range mutableOf(v) {
			out.VolumeContext[api.ContextParamPrefix+k] = val
		}
		s.replicationContext(v, out.VolumeContext)
	}
	switch v.Source.Kind {
	case zfs.SourceSnapshot:
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: v.Source.Name}}}
	case zfs.SourceVolume:
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.Source.Name}}}
	}
	return out
}

// DeleteVolume unexports and deletes a volume; a missing one is success.
// Snapshots of the volume stay usable (pkg/zfs keeps the data until the last
// snapshot goes).
func (s *Server) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	name := req.GetVolumeId()
	if err := api.Required("volume_id", name); err != nil {
		return nil, err
	}
	vol, unlock, err := s.lockExisting(ctx, name)
	if err != nil || vol == nil {
		return &csi.DeleteVolumeResponse{}, err
	}
	defer unlock()
	// Unexport first: ganesha holding the directory open keeps the dataset busy.
	if err := s.exporter.Unexport(ctx, vol.ExportID); err != nil {
		return nil, fmt.Errorf("unexporting volume %s: %w", name, err)
	}
	if err := s.pool.DeleteVolume(ctx, name); err != nil && !errors.Is(err, zfs.ErrNotFound) {
		// Put the export back: the volume still exists and may be in use.
		if xerr := s.export(ctx, vol); xerr != nil {
			klog.ErrorS(xerr, "Re-exporting a volume whose delete failed", "volume", name)
		}
		return nil, err
	}
	klog.InfoS("Volume deleted", "volume", name)
	return &csi.DeleteVolumeResponse{}, nil
}

// lockExisting locks a volume for a call that is done already when the
// volume does not exist (a delete, an unpublish): a nil volume then, and
// nothing to unlock.
func (s *Server) lockExisting(ctx context.Context, name string) (*zfs.Volume, func(), error) {
	if api.ValidateID(name) != nil {
		return nil, nil, nil // no such volume can exist
	}
	unlock, err := s.locks.Acquire(volumeKey(name))
	if err != nil {
		return nil, nil, err
	}
	vol, err := s.pool.GetVolume(ctx, name)
	if err != nil {
		unlock()
		if errors.Is(err, zfs.ErrNotFound) {
			err = nil
		}
		return nil, nil, err
	}
	return vol, unlock, nil
}

// ControllerExpandVolume raises the refquota; NFS clients see the new size
// at once, so no node step is needed.
func (s *Server) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	name := req.GetVolumeId()
	if err := api.Required("volume_id", name); err != nil {
		return nil, err
	}
	if req.GetCapacityRange() == nil {
		return nil, fmt.Errorf("%w: capacity_range is required", api.ErrInvalid)
	}
	if c := req.GetVolumeCapability(); c != nil {
		if err := api.ValidateCapabilities([]*csi.VolumeCapability{c}); err != nil {
			return nil, err
		}
	}
	vol, err := s.getVolume(ctx, name)
	if err != nil {
		return nil, err
	}
	size, err := api.ResolveCapacity(req.GetCapacityRange(), vol.Capacity)
	if err != nil {
		return nil, err
	}
	if lim := req.GetCapacityRange().GetLimitBytes(); lim > 0 && vol.Capacity > lim {
		// Volumes never shrink, so the answer would break the limit.
		return nil, fmt.Errorf("%w: volume %q is already %d bytes, more than the limit %d; volumes never shrink", api.ErrOutOfRange, name, vol.Capacity, lim)
	}
	unlock, err := s.locks.Acquire(volumeKey(name))
	if err != nil {
		return nil, err
	}
	defer unlock()
	vol, err = s.pool.ExpandVolume(ctx, name, size)
	if err != nil {
		return nil, err
	}
	klog.InfoS("Volume expanded", "volume", name, "capacity", vol.Capacity)
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: vol.Capacity, NodeExpansionRequired: false}, nil
}

// ControllerModifyVolume changes a live volume's mutable parameters (a
// VolumeAttributesClass's): checked as a StorageClass's are, so a request
// that is partly wrong changes nothing.
func (s *Server) ControllerModifyVolume(ctx context.Context, req *csi.ControllerModifyVolumeRequest) (*csi.ControllerModifyVolumeResponse, error) {
	name := req.GetVolumeId()
	if err := api.Required("volume_id", name); err != nil {
		return nil, err
	}
	m, err := api.ParseMutableParams(req.GetMutableParameters())
	if err != nil {
		return nil, err
	}
	props, err := zfs.ValidateProperties(m.Properties)
	if err != nil {
		return nil, err
	}
	if _, err := s.getVolume(ctx, name); err != nil {
		return nil, err
	}
	unlock, err := s.locks.Acquire(volumeKey(name))
	if err != nil {
		return nil, err
	}
	defer unlock()
	vol, err := s.pool.ModifyVolume(ctx, name, zfs.Modification{Thick: m.Thick, Properties: props,
		Squash: m.Squash, AnonUID: m.AnonUID, AnonGID: m.AnonGID})
	if err != nil {
		return nil, err
	}
	// Always: an export that matches is left alone, and a retry after a
	// failed re-export (the pool already changed) heals it.
	if err := s.export(ctx, vol); err != nil {
		return nil, fmt.Errorf("re-exporting volume %s: %w", name, err)
	}
	klog.InfoS("Volume modified", "volume", name, "thick", vol.Thick, "properties", vol.Properties, "squash", vol.Squash)
	return &csi.ControllerModifyVolumeResponse{}, nil
}

// mutableOf is a volume's mutable parameters as they are now: thick, its
// squashing (when recorded), and the tunables set on it (the others are
// the pool's defaults).
func mutableOf(v *zfs.Volume) map[string]string {
	out := map[string]string{api.ParamThick: strconv.FormatBool(v.Thick)}
	if v.Squash != api.SquashDefault {
		out[api.ParamSquash] = string(v.Squash)
		out[api.ParamAnonUID] = strconv.FormatUint(uint64(v.AnonUID), 10)
		out[api.ParamAnonGID] = strconv.FormatUint(uint64(v.AnonGID), 10)
	}
	for k, val := range v.Properties {
		out[k] = val
	}
	return out
}

// getVolume answers NotFound for names that cannot exist as well as for
// missing volumes.
func (s *Server) getVolume(ctx context.Context, name string) (*zfs.Volume, error) {
	if err := api.ValidateID(name); err != nil {
		return nil, fmt.Errorf("volume %q: %w", name, zfs.ErrNotFound)
	}
	return s.pool.GetVolume(ctx, name)
}

// ControllerGetVolume reports one volume.
func (s *Server) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	vol, err := s.getVolume(ctx, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeResponse{Volume: s.csiVolume(vol, true),
		Status: &csi.ControllerGetVolumeResponse_VolumeStatus{PublishedNodeIds: publishedNodes(vol)}}, nil
}

// ValidateVolumeCapabilities confirms mount capabilities of an existing volume.
func (s *Server) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, fmt.Errorf("%w: volume_capabilities are required", api.ErrInvalid)
	}
	if _, err := s.getVolume(ctx, req.GetVolumeId()); err != nil {
		return nil, err
	}
	return api.Confirm(req), nil
}

// volumePage is the page of volumes a listing's token and size ask for,
// in name order, and the token of the next page ("" after the last).
func (s *Server) volumePage(token string, maxEntries int32) (vols []*zfs.Volume, next string, err error) {
	after, err := csirpc.ParseToken(token)
	if err != nil {
		return nil, "", err
	}
	if err := csirpc.CheckMaxEntries(maxEntries); err != nil {
		return nil, "", err
	}
	vols, more := s.pool.VolumePage(after, int(maxEntries))
	if more && len(vols) > 0 {
		next = csirpc.TokenAfter(vols[len(vols)-1].Name)
	}
	return vols, next, nil
}

// ListVolumes pages through the pool's volumes in name order, from the
// pool's index: a page starts right after the key its token names, so a
// full pass over N volumes reads N entries.
func (s *Server) ListVolumes(_ context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	vols, next, err := s.volumePage(req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, v := range vols {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: s.csiVolume(v, true),
			Status: &csi.ListVolumesResponse_VolumeStatus{PublishedNodeIds: publishedNodes(v)}})
	}
	return resp, nil
}

// GetCapacity reports the pool's free bytes; one volume can use all of them.
func (s *Server) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	if len(req.GetVolumeCapabilities()) > 0 {
		if err := api.ValidateCapabilities(req.GetVolumeCapabilities()); err != nil {
			return &csi.GetCapacityResponse{}, nil // no capacity for what we cannot serve
		}
	}
	// Read now (one quick command): what users wrote since the last read
	// counts, for the provisioner's capacity tracking, and the creates'
	// check gets it too. The manifest's space (the registry's summary)
	// runs no command.
	c, err := s.pool.RefreshCapacity(ctx)
	if err != nil {
		return nil, err
	}
	return &csi.GetCapacityResponse{
		AvailableCapacity: c.Available,
		MaximumVolumeSize: wrapperspb.Int64(c.Available),
		MinimumVolumeSize: wrapperspb.Int64(api.MinCapacity),
	}, nil
}
