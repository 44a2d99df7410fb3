package driver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/lockset"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// ControllerServer is the cluster-wide CSI controller. It owns no data: it
// places volumes on storage servers and relays each call to the server that
// holds the volume, turning server-local names into cluster IDs. Where a
// name was sent is recorded before it is sent (pkg/placements), so a name
// is never created on two servers.
type ControllerServer struct {
	csi.UnimplementedControllerServer
	servers    *registry.Registry
	placements placements.Store
	locks      *lockset.LockSet
	opts       ControllerOptions
	metrics    *controllerMetrics
}

// ControllerOptions are the controller's settings.
type ControllerOptions struct {
	// DefaultCapacity is the size of a volume whose request names none.
	DefaultCapacity int64
	// CallTimeout bounds each call that changes something on a server.
	CallTimeout time.Duration
	// ReadTimeout bounds each call that only reads from one server, and
	// each server's part of a call that asks several (lists, capacity).
	ReadTimeout time.Duration
	// Publish advertises ControllerPublishVolume: every volume is then
	// published to each node that mounts it, and exports admit only those
	// nodes (with servers in per-node export mode).
	Publish bool
}

// Default call timeouts.
const (
	DefaultCallTimeout = 2 * time.Minute
	DefaultReadTimeout = 10 * time.Second
)

// NewControllerServer returns a controller over the servers in reg,
// recording placements in store and its metrics in metricsReg (which may
// be nil).
func NewControllerServer(reg *registry.Registry, store placements.Store, opts ControllerOptions, metricsReg prometheus.Registerer) (*ControllerServer, error) {
	if opts.DefaultCapacity <= 0 {
		return nil, errors.New("default volume size must be positive")
	}
	if store == nil {
		return nil, errors.New("the controller needs a placements store")
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	return &ControllerServer{servers: reg, placements: store, locks: lockset.New(), opts: opts,
		metrics: newControllerMetrics(metricsReg)}, nil
}

// ControllerGetCapabilities is what every server implements, with
// publishing when the controller is configured for it.
func (c *ControllerServer) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: api.ControllerCapabilities(c.opts.Publish)}, nil
}

// CreateVolume places a new volume, or finds the one a repeated call made.
func (c *ControllerServer) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	cv, err := api.ParseCreateVolume(req, c.defaultCapacity())
	if err != nil {
		return nil, err
	}
	unlock, err := c.locks.Acquire("volume/" + cv.ID)
	if err != nil {
		return nil, err
	}
	defer unlock()

	fwd := proto.Clone(req).(*csi.CreateVolumeRequest)
	fwd.Parameters = api.WithoutServer(req.GetParameters())
	if cv.DefaultCapacity {
		// The controller's default wins over each server's, so placement
		// and the server agree on the size.
		fwd.CapacityRange = &csi.CapacityRange{RequiredBytes: cv.Capacity}
	}
	m, err := c.volumeServer(ctx, cv, fwd)
	if err != nil {
		return nil, err
	}
	rec := placements.Record{Kind: placements.Volume, ID: cv.ID, Server: m.Name}
	if err := c.placements.Put(ctx, rec); err != nil {
		return nil, c.placementErr(err)
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	resp, err := m.Controller.CreateVolume(cctx, fwd)
	if err != nil {
		c.createFailed(ctx, rec, m, err)
		return nil, err
	}
	// Counted at once, so a burst of creates spreads before the next probe
	// reads the truth.
	m.AddProvisioned(resp.GetVolume().GetCapacityBytes())
	klog.V(2).InfoS("Volume created", "volume", cv.Name, "server", m.Name)
	return &csi.CreateVolumeResponse{Volume: c.clusterVolume(m, resp.GetVolume())}, nil
}

// volumeServer picks the server of a new volume: the one holding its
// content source (clones are O(1) only there), the one a record names (a
// retry goes where the first attempt went), or a placement.
func (c *ControllerServer) volumeServer(ctx context.Context, cv api.CreateVolume, fwd *csi.CreateVolumeRequest) (*registry.Member, error) {
	if cv.Source.Kind != api.SourceNone {
		m, err := c.routeSource(ctx, cv.Source, fwd)
		if err != nil {
			return nil, err
		}
		if p := cv.Params.Server; p != "" && p != m.Name {
			return nil, fmt.Errorf("%w: parameter server=%q conflicts with the content source on server %q", api.ErrInvalid, p, m.Name)
		}
		return m, nil
	}
	m, found, err := c.placed(ctx, placements.Volume, cv.ID)
	if err != nil || found {
		return m, err
	}
	return c.place(cv.Params.Server, cv.Capacity)
}

// routeSource rewrites the content source to the server's own ID and
// returns the server holding it.
func (c *ControllerServer) routeSource(ctx context.Context, src api.Source, fwd *csi.CreateVolumeRequest) (*registry.Member, error) {
	m, id, err := c.member(ctx, string(src.Kind), src.ID)
	if err != nil {
		return nil, err
	}
	if src.Kind == api.SourceSnapshot {
		fwd.VolumeContentSource.GetSnapshot().SnapshotId = id
	} else {
		fwd.VolumeContentSource.GetVolume().VolumeId = id
	}
	return m, nil
}

// clusterVolume turns a server's answer into what Kubernetes stores: cluster
// IDs, and the context a node needs to mount the volume.
func (c *ControllerServer) clusterVolume(m *registry.Member, v *csi.Volume) *csi.Volume {
	out := proto.Clone(v).(*csi.Volume)
	out.VolumeId = api.FormatID(m.Name, v.GetVolumeId())
	ctx := map[string]string{
		api.ContextServer:     m.Name,
		api.ContextNFSAddress: m.NFSAddress,
		api.ContextExport:     v.GetVolumeContext()[api.ContextExport],
	}
	if m.NFSPort != 0 {
		ctx[api.ContextNFSPort] = strconv.Itoa(m.NFSPort)
	}
	if m.LocalPaths {
		ctx[api.ContextLocalPath] = v.GetVolumeContext()[api.ContextLocalPath]
	}
	if used, ok := v.GetVolumeContext()[api.ContextUsedBytes]; ok {
		ctx[api.ContextUsedBytes] = used // reported, not recorded: see api.ContextUsedBytes
	}
	out.VolumeContext = ctx
	switch {
	case v.GetContentSource().GetSnapshot() != nil:
		out.ContentSource.GetSnapshot().SnapshotId = api.FormatID(m.Name, v.GetContentSource().GetSnapshot().GetSnapshotId())
	case v.GetContentSource().GetVolume() != nil:
		out.ContentSource.GetVolume().VolumeId = api.FormatID(m.Name, v.GetContentSource().GetVolume().GetVolumeId())
	}
	return out
}

func (c *ControllerServer) defaultCapacity() int64 { return c.opts.DefaultCapacity }

// DeleteVolume relays to the holding server. An ID no server can hold, or
// one of a server declared gone (`dots server forget`), is deleted already;
// one of a server that is not reachable now answers Unavailable until it
// is: a delete is never reported that did not happen.
func (c *ControllerServer) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	m, id, err := c.memberForDelete(ctx, placements.Volume, req.GetVolumeId())
	if err != nil || m == nil {
		return &csi.DeleteVolumeResponse{}, err
	}
	unlock, err := c.locks.Acquire("volume/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	if _, err := m.Controller.DeleteVolume(cctx, &csi.DeleteVolumeRequest{VolumeId: id, Secrets: req.GetSecrets()}); err != nil {
		return nil, err
	}
	if err := c.placements.Delete(ctx, placements.Record{Kind: placements.Volume, ID: id, Server: m.Name}); err != nil {
		// The volume is gone; a record left behind only pins a name no
		// one uses to a server.
		c.logPlacementLeft(placements.Volume, id, m.Name, err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// ControllerExpandVolume relays to the holding server.
func (c *ControllerServer) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if req.GetCapacityRange() == nil {
		return nil, fmt.Errorf("%w: capacity_range is required", api.ErrInvalid)
	}
	m, id, err := c.member(ctx, "volume", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	fwd := proto.Clone(req).(*csi.ControllerExpandVolumeRequest)
	fwd.VolumeId = id
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	return m.Controller.ControllerExpandVolume(cctx, fwd)
}

// ControllerGetVolume relays to the holding server.
func (c *ControllerServer) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	m, id, err := c.member(ctx, "volume", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
	defer cancel()
	resp, err := m.Controller.ControllerGetVolume(cctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeResponse{Volume: c.clusterVolume(m, resp.GetVolume()), Status: resp.GetStatus()}, nil
}

// ValidateVolumeCapabilities relays to the holding server.
func (c *ControllerServer) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, fmt.Errorf("%w: volume_capabilities are required", api.ErrInvalid)
	}
	m, id, err := c.member(ctx, "volume", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
	defer cancel()
	if _, err := m.Controller.ControllerGetVolume(cctx, &csi.ControllerGetVolumeRequest{VolumeId: id}); err != nil {
		return nil, err
	}
	return api.Confirm(req), nil
}
