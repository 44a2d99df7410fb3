package driver

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/lockset"
	"github.com/dots-csi/dots/pkg/registry"
)

// ControllerServer is the cluster-wide CSI controller. It owns no data: it
// places volumes on storage servers and relays each call to the server that
// holds the volume, turning server-local names into cluster IDs.
type ControllerServer struct {
	csi.UnimplementedControllerServer
	servers         *registry.Registry
	locks           *lockset.LockSet
	defaultCapacity int64
}

// NewControllerServer returns a controller over the servers in reg.
func NewControllerServer(reg *registry.Registry, defaultCapacity int64) (*ControllerServer, error) {
	if defaultCapacity <= 0 {
		return nil, errors.New("default volume size must be positive")
	}
	return &ControllerServer{servers: reg, locks: lockset.New(), defaultCapacity: defaultCapacity}, nil
}

// ControllerGetCapabilities is what every server implements.
func (c *ControllerServer) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: api.ControllerCapabilities()}, nil
}

// member finds the server named in an ID. Malformed IDs and unknown servers
// answer NotFound: no such volume can exist.
func (c *ControllerServer) member(kind, id string) (*registry.Member, string, error) {
	srv, name, err := api.ParseID(id)
	if err != nil {
		return nil, "", fmt.Errorf("%s %q: %w", kind, id, err)
	}
	m, ok := c.servers.Get(srv)
	if !ok {
		return nil, "", fmt.Errorf("%s %q: %w: no storage server %q", kind, id, errNotFound, srv)
	}
	return m, name, nil
}

// CreateVolume places a new volume, or finds the one a repeated call made.
func (c *ControllerServer) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	cv, err := api.ParseCreateVolume(req, c.defaultCapacity)
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

	var m *registry.Member
	if cv.Source.Kind != api.SourceNone {
		// Clones are O(1) only on the server that holds the source.
		if m, err = c.routeSource(cv.Source, fwd); err != nil {
			return nil, err
		}
		if p := cv.Params.Server; p != "" && p != m.Name {
			return nil, fmt.Errorf("%w: parameter server=%q conflicts with the content source on server %q", api.ErrInvalid, p, m.Name)
		}
	} else if m, err = c.existing(ctx, cv.ID); err != nil {
		return nil, err
	} else if m == nil {
		if m, err = c.place(ctx, cv.Params.Server, cv.Capacity); err != nil {
			return nil, err
		}
	}
	resp, err := m.Controller.CreateVolume(ctx, fwd)
	if err != nil {
		return nil, err
	}
	// Counted at once, so a burst of creates spreads before the next probe
	// reads the truth.
	m.AddProvisioned(resp.GetVolume().GetCapacityBytes())
	klog.V(2).InfoS("Volume placed", "volume", cv.Name, "server", m.Name)
	return &csi.CreateVolumeResponse{Volume: c.clusterVolume(m, resp.GetVolume())}, nil
}

// routeSource rewrites the content source to the server's own ID and
// returns the server holding it.
func (c *ControllerServer) routeSource(src api.Source, fwd *csi.CreateVolumeRequest) (*registry.Member, error) {
	m, id, err := c.member(string(src.Kind), src.ID)
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

// existing returns the server that already holds a volume of this ID, so a
// repeated CreateVolume never makes a second dataset on another server.
func (c *ControllerServer) existing(ctx context.Context, id string) (*registry.Member, error) {
	for _, m := range c.servers.List() {
		_, err := m.Controller.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
		switch status.Code(err) {
		case codes.OK:
			return m, nil
		case codes.NotFound:
		default:
			// A down server cannot be asked; a volume a lost reply left
			// there stays until that server answers again (a leak, never
			// a loss).
			klog.InfoS("Storage server not asked for an existing volume", "server", m.Name, "volume", id, "err", err)
		}
	}
	return nil, nil
}

// place picks a server with room for size bytes (see choose), or checks
// the pinned one.
func (c *ControllerServer) place(ctx context.Context, pinned string, size int64) (*registry.Member, error) {
	candidates := c.servers.List()
	if pinned != "" {
		m, ok := c.servers.Get(pinned)
		if !ok {
			return nil, fmt.Errorf("%w: parameter server=%q: no such storage server", api.ErrInvalid, pinned)
		}
		candidates = []*registry.Member{m}
	}
	var reached []*registry.Member
	var cands []candidate
	var largest int64
	var lastErr error
	for _, m := range candidates {
		resp, err := m.Controller.GetCapacity(ctx, &csi.GetCapacityRequest{})
		if err != nil {
			lastErr = err
			continue
		}
		reached = append(reached, m)
		cands = append(cands, candidate{free: resp.GetAvailableCapacity(), provisioned: m.Status().Provisioned})
		largest = max(largest, resp.GetAvailableCapacity())
	}
	if i := choose(cands, size); i >= 0 {
		return reached[i], nil
	}
	switch {
	case len(reached) == 0 && lastErr != nil:
		return nil, fmt.Errorf("%w: no storage server answered: %v", errUnavailable, lastErr)
	case len(reached) == 0:
		return nil, fmt.Errorf("%w: no storage servers are configured", errUnavailable)
	}
	return nil, fmt.Errorf("%w: none has %d bytes free (the most free is %d)", errNoRoom, size, largest)
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
	out.VolumeContext = ctx
	switch {
	case v.GetContentSource().GetSnapshot() != nil:
		out.ContentSource.GetSnapshot().SnapshotId = api.FormatID(m.Name, v.GetContentSource().GetSnapshot().GetSnapshotId())
	case v.GetContentSource().GetVolume() != nil:
		out.ContentSource.GetVolume().VolumeId = api.FormatID(m.Name, v.GetContentSource().GetVolume().GetVolumeId())
	}
	return out
}

// DeleteVolume relays to the holding server; an ID no server can hold is
// already deleted.
func (c *ControllerServer) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	m, name, err := c.member("volume", req.GetVolumeId())
	if err != nil {
		klog.InfoS("Deleting a volume no server can hold: nothing to do", "volume", req.GetVolumeId(), "reason", err)
		return &csi.DeleteVolumeResponse{}, nil
	}
	unlock, err := c.locks.Acquire("volume/" + name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return m.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: name, Secrets: req.GetSecrets()})
}

// ControllerExpandVolume relays to the holding server.
func (c *ControllerServer) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if req.GetCapacityRange() == nil {
		return nil, fmt.Errorf("%w: capacity_range is required", api.ErrInvalid)
	}
	m, name, err := c.member("volume", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	fwd := proto.Clone(req).(*csi.ControllerExpandVolumeRequest)
	fwd.VolumeId = name
	return m.Controller.ControllerExpandVolume(ctx, fwd)
}

// ControllerGetVolume relays to the holding server.
func (c *ControllerServer) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	m, name, err := c.member("volume", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	resp, err := m.Controller.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: name})
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
	m, name, err := c.member("volume", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if _, err := m.Controller.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: name}); err != nil {
		return nil, err
	}
	return api.Confirm(req), nil
}

// GetCapacity reports one server's free bytes (parameter server) or the
// sum over the servers that answer, with the largest single volume possible.
func (c *ControllerServer) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	p, err := api.ParseParams(req.GetParameters())
	if err != nil {
		return nil, err
	}
	members := c.servers.List()
	if p.Server != "" {
		m, ok := c.servers.Get(p.Server)
		if !ok {
			return nil, fmt.Errorf("%w: parameter server=%q: no such storage server", api.ErrInvalid, p.Server)
		}
		members = []*registry.Member{m}
	}
	out := &csi.GetCapacityResponse{}
	var largest int64
	for _, m := range members {
		resp, err := m.Controller.GetCapacity(ctx, &csi.GetCapacityRequest{VolumeCapabilities: req.GetVolumeCapabilities()})
		if err != nil {
			if p.Server != "" {
				return nil, err
			}
			klog.V(4).InfoS("Storage server left out of capacity", "server", m.Name, "err", err)
			continue
		}
		out.AvailableCapacity += resp.GetAvailableCapacity()
		largest = max(largest, resp.GetMaximumVolumeSize().GetValue())
		out.MinimumVolumeSize = resp.GetMinimumVolumeSize()
	}
	out.MaximumVolumeSize = wrapperspb.Int64(largest)
	return out, nil
}
