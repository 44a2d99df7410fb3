package driver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	csi.UnimplementedGroupControllerServer
	servers    *registry.Registry
	placements placements.Store
	locks      *lockset.LockSet
	opts       ControllerOptions
	metrics    *controllerMetrics
	prefetch   prefetcher // ListVolumes pages read ahead
}

// ControllerOptions are the controller's settings.
type ControllerOptions struct {
	// DefaultCapacity is the size of a volume whose request names none.
	DefaultCapacity int64
	// CallTimeout bounds each call that changes something on a server.
	CallTimeout time.Duration
	// ReadTimeout bounds each call that only reads from one server, and
	// each server's part of a call that asks several (lists).
	ReadTimeout time.Duration
	// Publish advertises ControllerPublishVolume: every volume is then
	// published to each node that mounts it, and exports admit only those
	// nodes (with servers in per-node export mode).
	Publish bool
	// VolumeMoved is told of every volume whose primary moved; nil:
	// nothing is.
	VolumeMoved api.VolumeMoved
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
	m, retry, err := c.volumeServer(ctx, cv, fwd)
	if err != nil {
		return nil, err
	}
	var copyFrom *registry.Member // a restore or clone copied from another server
	if cv.Source.Kind != api.SourceNone {
		if m, copyFrom, retry, err = c.copyTarget(ctx, cv, m); err != nil {
			return nil, err
		}
	}
	rec, err := c.replicaRecord(ctx, placements.Record{Kind: placements.Volume, ID: cv.ID, Server: m.Name}, cv, retry)
	if err != nil {
		return nil, err
	}
	if err := c.placements.Put(ctx, rec); err != nil {
		return nil, c.placementErr(err)
	}
	var resp *csi.CreateVolumeResponse
	if copyFrom == nil {
		cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
		resp, err = m.Controller.CreateVolume(cctx, fwd)
		cancel()
		if err != nil {
			c.createFailed(ctx, rec, m, err)
			dst := c.copyElsewhere(cv, m)
			if status.Code(err) != codes.ResourceExhausted || retry || dst == nil {
				return nil, err
			}
			// The source's server has no room after all: copy.
			if rec, err = c.replicaRecord(ctx, placements.Record{Kind: placements.Volume, ID: cv.ID, Server: dst.Name}, cv, false); err != nil {
				return nil, err
			}
			if err := c.placements.Put(ctx, rec); err != nil {
				return nil, c.placementErr(err)
			}
			m, copyFrom = dst, m
		}
	}
	if copyFrom != nil {
		if resp, err = c.copyCreate(ctx, copyFrom, m, cv, req, fwd); err != nil {
			return nil, err // the record stays: a retry finds the copy, or copies again
		}
	}
	if !retry {
		// Counted at once, so a burst of creates spreads before the next
		// probe reads the truth. A retry (its record was there) was
		// counted by its first attempt, or by the probe that found it.
		m.Account(createdVolume(resp.GetVolume().GetCapacityBytes(), cv.Params.Thick))
	}
	if err := c.startReplication(ctx, m, rec); err != nil {
		return nil, err
	}
	klog.V(2).InfoS("Volume created", "volume", cv.Name, "server", m.Name, "replicas", rec.Replicas)
	v := c.clusterVolume(m, resp.GetVolume())
	c.withCandidates(v, rec)
	if copyFrom != nil {
		withSource(v, req)
	}
	return &csi.CreateVolumeResponse{Volume: v}, nil
}

// volumeServer picks the server of a new volume: the one holding its
// content source (clones are O(1) only there), the one a record names (a
// retry goes where the first attempt went: retry is true), or a placement.
// It asks no server: an existing name is found by its record alone.
func (c *ControllerServer) volumeServer(ctx context.Context, cv api.CreateVolume, fwd *csi.CreateVolumeRequest) (m *registry.Member, retry bool, err error) {
	if cv.Source.Kind != api.SourceNone {
		m, err := c.routeSource(ctx, cv.Source, fwd)
		if err != nil {
			return nil, false, err
		}
		if p := cv.Params.Server; p != "" && p != m.Name {
			return nil, false, fmt.Errorf("%w: parameter server=%q conflicts with the content source on server %q", api.ErrInvalid, p, m.Name)
		}
		return m, false, nil
	}
	m, found, err := c.placed(ctx, placements.Volume, cv.ID)
	if err != nil || found {
		return m, found, err
	}
	m, err = c.place(cv.Params.Server, cv.Capacity)
	return m, false, err
}

// createdVolume is what a new volume changes on its server: a thick one
// takes its whole capacity from the free space at once, a thin one
// nothing until data arrives.
func createdVolume(capacity int64, thick bool) registry.Change {
	ch := registry.Change{Volumes: 1, Provisioned: capacity}
	if thick {
		ch.Reserve = capacity
	}
	return ch
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
// IDs, and the context a node needs to mount the volume. It rewrites v in
// place (a server's answer, decoded for this call only): a listing passes
// every volume of the cluster through here, and a copy of each would cost
// as much as the rest of the pass.
func (c *ControllerServer) clusterVolume(m *registry.Member, v *csi.Volume) *csi.Volume {
	if v == nil {
		return nil
	}
	out := v
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
	for _, k := range []string{api.ContextUsedBytes, api.ContextGeneration, api.ContextReplicas} {
		if val, ok := v.GetVolumeContext()[k]; ok {
			ctx[k] = val // reported, not recorded: see api.ContextUsedBytes
		}
	}
	for k, val := range v.GetVolumeContext() {
		if strings.HasPrefix(k, api.ContextParamPrefix) {
			ctx[k] = val // reported like the used bytes
		}
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
	m, id, rec, err := c.routedForDelete(ctx, placements.Volume, req.GetVolumeId())
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
	if rec.Server == m.Name && rec.Replicated() {
		return &csi.DeleteVolumeResponse{}, c.deleteReplicas(ctx, rec)
	}
	// Not accounted: the answer says neither whether the volume existed nor
	// its size, and asking first would cost a delete a round trip. The
	// figures stay conservative (the space a delete frees is left to the
	// next probe anyway: a volume with snapshots frees nothing until its
	// last snapshot goes), and the next probe brings the server's own.
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
	return relay(ctx, c.opts.CallTimeout, req, func(r *csi.ControllerExpandVolumeRequest) { r.VolumeId = id },
		m.Controller.ControllerExpandVolume)
}

// ControllerModifyVolume relays to the holding server, after the checks
// that need no server: a misspelled or immutable key (server: moving a
// volume) is refused here.
func (c *ControllerServer) ControllerModifyVolume(ctx context.Context, req *csi.ControllerModifyVolumeRequest) (*csi.ControllerModifyVolumeResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if _, err := api.ParseMutableParams(req.GetMutableParameters()); err != nil {
		return nil, err
	}
	m, id, err := c.member(ctx, "volume", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	return relay(ctx, c.opts.CallTimeout, req, func(r *csi.ControllerModifyVolumeRequest) { r.VolumeId = id },
		m.Controller.ControllerModifyVolume)
}

// ControllerGetVolume relays to the holding server.
func (c *ControllerServer) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	m, id, rec, err := c.routed(ctx, "volume", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
	defer cancel()
	resp, err := m.Controller.ControllerGetVolume(cctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		return nil, err
	}
	v := c.clusterVolume(m, resp.GetVolume())
	if v != nil {
		// The ID asked for: a volume keeps its ID when its primary moves.
		v.VolumeId = req.GetVolumeId()
		c.withCandidates(v, rec)
	}
	return &csi.ControllerGetVolumeResponse{Volume: v, Status: resp.GetStatus()}, nil
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
