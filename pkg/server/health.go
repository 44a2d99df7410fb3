package server

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/zfs"
)

// ControllerGetVolumeHealth reports a volume INACCESSIBLE while its dataset
// is not mounted (and so not exported); a healthy volume has no entries.
func (s *Server) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	vol, err := s.getVolume(ctx, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: s.volumeHealth(vol)}, nil
}

// ControllerListVolumeHealth pages through every volume's health in name
// order, as ListVolumes pages through the volumes.
func (s *Server) ControllerListVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	vols, err := s.pool.ListVolumes(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(vols))
	for i, v := range vols {
		names[i] = v.Name
	}
	first, end, next, err := csirpc.Page(names, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ControllerListVolumeHealthResponse{NextToken: next}
	for _, v := range vols[first:end] {
		resp.Entries = append(resp.Entries, s.volumeHealth(v))
	}
	return resp, nil
}

// Reasons of the health entries.
const reasonNotMounted = "NotMounted"

func (s *Server) volumeHealth(v *zfs.Volume) *csi.VolumeHealth {
	h := &csi.VolumeHealth{VolumeId: v.Name}
	if !v.Mounted {
		h.HealthStatuses = append(h.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
			Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: reasonNotMounted,
			Message: fmt.Sprintf("not served: its dataset is not mounted (%v); the server keeps trying", s.pool.MountError(v.Name)),
		})
	}
	return h
}
