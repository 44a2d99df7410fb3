package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
)

// ExportAccess says who an export admits.
type ExportAccess string

const (
	// AccessPerNode: only the nodes the volume is published to
	// (ControllerPublishVolume), each by its own addresses.
	AccessPerNode ExportAccess = "per-node"
	// AccessClients: every address in the client networks, published or
	// not. Weaker: any node there can mount any volume.
	AccessClients ExportAccess = "clients"
)

// ControllerPublishVolume admits a node to a volume's export: the node's
// addresses join the volume's record on the pool, then the export.
// Publishing again to the same node is a no-op.
func (s *Server) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	name, nodeID := req.GetVolumeId(), req.GetNodeId()
	if err := errors.Join(api.Required("volume_id", name), api.Required("node_id", nodeID)); err != nil {
		return nil, err
	}
	if req.GetVolumeCapability() == nil {
		return nil, fmt.Errorf("%w: volume_capability is required", api.ErrInvalid)
	}
	if err := api.ValidateCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	node, err := api.ParseNodeID(nodeID)
	if err != nil {
		return nil, err
	}
	if err := s.admissible(node); err != nil {
		return nil, err
	}
	unlock, err := s.locks.Acquire(volumeKey(name))
	if err != nil {
		return nil, err
	}
	defer unlock()
	vol, err := s.getVolume(ctx, name)
	if err != nil {
		return nil, err
	}
	pub := zfs.Publication{Node: nodeID, ReadOnly: req.GetReadonly() || readOnlyMode(req.GetVolumeCapability())}
	i := slices.IndexFunc(vol.Published, func(p zfs.Publication) bool { return p.Node == nodeID })
	if singleNode(req.GetVolumeCapability()) && len(vol.Published) > 0 && (i < 0 || len(vol.Published) > 1) {
		return nil, fmt.Errorf("%w: volume %q is published to node %s and its access mode allows one node", ErrPublishedElsewhere, name, vol.Published[0].Node)
	}
	switch {
	case i >= 0 && vol.Published[i] == pub:
		// Published already: make sure the export says so (a failed
		// export of an earlier call), and answer the same.
	case i >= 0:
		return nil, fmt.Errorf("%w: volume %q is published to node %s read-only=%t; unpublish it first", zfs.ErrExists, name, nodeID, vol.Published[i].ReadOnly)
	default:
		if vol, err = s.pool.SetPublished(ctx, name, append(slices.Clone(vol.Published), pub)); err != nil {
			return nil, err
		}
		klog.InfoS("Volume published", "volume", name, "node", nodeID, "readOnly", pub.ReadOnly)
	}
	if err := s.export(ctx, vol); err != nil {
		return nil, fmt.Errorf("exporting volume %s to node %s: %w", name, nodeID, err)
	}
	return &csi.ControllerPublishVolumeResponse{}, nil
}

// ControllerUnpublishVolume removes a node (every node when node_id is
// empty) from a volume's export. A volume or node that is not there is
// unpublished already.
func (s *Server) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	name, nodeID := req.GetVolumeId(), req.GetNodeId()
	if err := api.Required("volume_id", name); err != nil {
		return nil, err
	}
	if nodeID != "" {
		if _, err := api.ParseNodeID(nodeID); err != nil && !errors.Is(err, api.ErrUnknownNode) {
			return nil, err
		}
	}
	vol, unlock, err := s.lockExisting(ctx, name)
	if err != nil || vol == nil {
		return &csi.ControllerUnpublishVolumeResponse{}, err
	}
	defer unlock()
	kept := slices.DeleteFunc(slices.Clone(vol.Published), func(p zfs.Publication) bool { return nodeID == "" || p.Node == nodeID })
	if len(kept) != len(vol.Published) {
		if vol, err = s.pool.SetPublished(ctx, name, kept); err != nil {
			return nil, err
		}
		klog.InfoS("Volume unpublished", "volume", name, "node", nodeID)
	}
	// The export follows the record; an unmounted volume has no export to
	// change.
	if vol.Mounted {
		if err := s.exporter.Export(ctx, s.ExportFor(vol)); err != nil {
			return nil, fmt.Errorf("exporting volume %s without node %s: %w", name, nodeID, err)
		}
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

// admissible refuses a node none of whose addresses the server's client
// networks hold: its export would never admit it.
func (s *Server) admissible(node api.NodeID) error {
	for _, a := range node.Addresses {
		if !slices.ContainsFunc(s.opts.Clients, func(p netip.Prefix) bool { return p.Contains(a) }) {
			return fmt.Errorf("%w: node %s: address %s is outside the NFS client networks %v of server %s",
				ErrOutsideClients, node, a, s.opts.Clients, s.opts.Name)
		}
	}
	return nil
}

func singleNode(c *csi.VolumeCapability) bool {
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER, csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		return true
	}
	return false
}

func readOnlyMode(c *csi.VolumeCapability) bool {
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return true
	}
	return false
}

// clientsOf is who a volume's export admits, read-write and read-only.
func (s *Server) clientsOf(v *zfs.Volume) (rw, ro []string) {
	if s.opts.Access == AccessClients {
		for _, p := range s.opts.Clients {
			rw = append(rw, p.String())
		}
		return rw, nil
	}
	for _, p := range v.Published {
		node, err := api.ParseNodeID(p.Node)
		if err != nil {
			continue // read back from the pool, so checked already
		}
		for _, a := range node.Addresses {
			if p.ReadOnly {
				ro = append(ro, a.String())
			} else {
				rw = append(rw, a.String())
			}
		}
	}
	slices.Sort(rw)
	rw = slices.Compact(rw)
	// An address published read-write and read-only (two node IDs
	// sharing it) gets what the read-write publication asked for.
	ro = slices.DeleteFunc(ro, func(a string) bool { _, found := slices.BinarySearch(rw, a); return found })
	slices.Sort(ro)
	return rw, slices.Compact(ro)
}

// squashOf maps a volume's squashing to the NFS server's.
func squashOf(v *zfs.Volume) (squash string, anonUID, anonGID uint32) {
	switch v.Squash {
	case api.SquashNone:
		return nfs.SquashNone, 0, 0
	case api.SquashRoot:
		return nfs.SquashRoot, v.AnonUID, v.AnonGID
	case api.SquashAll:
		return nfs.SquashAll, v.AnonUID, v.AnonGID
	}
	return "", 0, 0
}

func publishedNodes(v *zfs.Volume) []string {
	var out []string
	for _, p := range v.Published {
		out = append(out, p.Node)
	}
	return out
}
