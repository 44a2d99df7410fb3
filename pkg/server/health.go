package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs"
)

// ControllerGetVolumeHealth reports a volume INACCESSIBLE while its dataset
// is not mounted (and so not exported), and every volume DEGRADED or
// INACCESSIBLE while the pool is not ONLINE (see poolHealth); a healthy
// volume has no entries.
func (s *Server) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	vol, err := s.getVolume(ctx, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: s.volumeHealth(vol, s.poolHealth(ctx))}, nil
}

// ControllerListVolumeHealth pages through every volume's health in name
// order, from the pool's index as ListVolumes pages.
func (s *Server) ControllerListVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	vols, next, err := s.volumePage(req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ControllerListVolumeHealthResponse{NextToken: next}
	pool := s.poolHealth(ctx)
	for _, v := range vols {
		resp.Entries = append(resp.Entries, s.volumeHealth(v, pool))
	}
	return resp, nil
}

// Reasons of the health entries.
const (
	reasonNotMounted = "NotMounted"
	// reasonPoolPrefix + the pool's state in CamelCase: PoolDegraded,
	// PoolFaulted, PoolSuspended, ...
	reasonPoolPrefix = "Pool"
	// reasonPoolStateUnknown: zpool did not say what state the pool is in.
	reasonPoolStateUnknown = "PoolStateUnknown"
)

// poolHealth is the entry every volume of the pool carries while the pool
// is not ONLINE (nil while it is): DEGRADED while the pool still serves
// every block (a mirror or raidz without one of its devices), INACCESSIBLE
// when it does not (FAULTED, UNAVAIL, SUSPENDED, ...). It asks zpool at
// each call: a volume's health is never older than the question.
func (s *Server) poolHealth(ctx context.Context) *csi.VolumeHealth_VolumeHealthEntry {
	state, err := s.pool.State(ctx)
	switch {
	case err != nil:
		return &csi.VolumeHealth_VolumeHealthEntry{Status: csi.VolumeHealthErrorType_DEGRADED, Reason: reasonPoolStateUnknown,
			Message: fmt.Sprintf("the state of pool %s is unknown: %v", s.pool.Name(), err)}
	case state == zfs.HealthOnline:
		return nil
	case state == zfs.HealthDegraded:
		return &csi.VolumeHealth_VolumeHealthEntry{Status: csi.VolumeHealthErrorType_DEGRADED, Reason: reasonPoolPrefix + camel(state),
			Message: fmt.Sprintf("pool %s is %s: it serves every block, with less redundancy until its devices are repaired (zpool status %s)", s.pool.Name(), state, s.pool.Name())}
	}
	return &csi.VolumeHealth_VolumeHealthEntry{Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: reasonPoolPrefix + camel(state),
		Message: fmt.Sprintf("pool %s is %s (zpool status %s)", s.pool.Name(), state, s.pool.Name())}
}

// camel turns a zpool state (FAULTED) into CamelCase (Faulted).
func camel(state string) string {
	if state == "" {
		return "Unknown"
	}
	return strings.ToUpper(state[:1]) + strings.ToLower(state[1:])
}

func (s *Server) volumeHealth(v *zfs.Volume, pool *csi.VolumeHealth_VolumeHealthEntry) *csi.VolumeHealth {
	h := &csi.VolumeHealth{VolumeId: v.Name}
	if pool != nil {
		h.HealthStatuses = append(h.HealthStatuses, pool)
	}
	if r := s.replicationHealth(v); r != nil {
		h.HealthStatuses = append(h.HealthStatuses, r)
	}
	if !v.Mounted {
		h.HealthStatuses = append(h.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
			Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: reasonNotMounted,
			Message: fmt.Sprintf("not served: its dataset is not mounted (%v); the server keeps trying", s.pool.MountError(v.Name)),
		})
	}
	return h
}
