package driver

import (
	"context"
	"errors"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
)

// ControllerPublishVolume relays to the holding server, which admits the
// node's addresses to the volume's export.
func (c *ControllerServer) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	if !c.opts.Publish {
		return nil, errPublishDisabled
	}
	if err := errors.Join(api.Required("volume_id", req.GetVolumeId()), api.Required("node_id", req.GetNodeId())); err != nil {
		return nil, err
	}
	if req.GetVolumeCapability() == nil {
		return nil, fmt.Errorf("%w: volume_capability is required", api.ErrInvalid)
	}
	// Checked here too, so a malformed node never reaches a server.
	if _, err := api.ParseNodeID(req.GetNodeId()); err != nil {
		return nil, err
	}
	m, id, err := c.member(ctx, "volume", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	unlock, err := c.locks.Acquire("volume/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return relay(ctx, c.opts.CallTimeout, req, func(r *csi.ControllerPublishVolumeRequest) { r.VolumeId = id },
		m.Controller.ControllerPublishVolume)
}

// ControllerUnpublishVolume relays to the holding server. A volume no
// server can hold, or one of a server declared gone, is unpublished
// already; one of a server not reachable now answers Unavailable.
func (c *ControllerServer) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	if !c.opts.Publish {
		return nil, errPublishDisabled
	}
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if n := req.GetNodeId(); n != "" {
		if _, err := api.ParseNodeID(n); err != nil && !errors.Is(err, api.ErrUnknownNode) {
			return nil, err
		}
	}
	m, id, err := c.member(ctx, string(placements.Volume), req.GetVolumeId())
	if errors.Is(err, api.ErrMalformedID) || errors.Is(err, errNotFound) {
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock, err := c.locks.Acquire("volume/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return relay(ctx, c.opts.CallTimeout, req, func(r *csi.ControllerUnpublishVolumeRequest) { r.VolumeId = id },
		m.Controller.ControllerUnpublishVolume)
}
