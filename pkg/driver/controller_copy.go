package driver

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// A clone or restore from a snapshot is O(1) on the snapshot's server.
// When that server has no room for the new volume, the volume goes to
// another server and the snapshot's server sends it there whole (a
// cross-server copy: O(data), as slow as the bytes it holds), rather than
// the create failing. A clone of a volume does the same through a
// temporary snapshot of its source (cloneSnapshot).

// copyTarget decides where a volume cloned or restored from a source on src goes:
// src itself (copyFrom nil), or another server that src copies to. A
// record of an earlier attempt decides (retry true); otherwise src's
// cached free space does.
func (c *ControllerServer) copyTarget(ctx context.Context, cv api.CreateVolume, src *registry.Member) (dst, copyFrom *registry.Member, retry bool, err error) {
	rec, ok, err := c.placements.Lookup(ctx, placements.Volume, cv.ID)
	switch {
	case err != nil:
		return nil, nil, false, fmt.Errorf("%w: reading where %q was placed: %v", errUnavailable, cv.ID, err)
	case ok && rec.Server == src.Name:
		return src, nil, true, nil
	case ok:
		m, known := c.servers.Get(rec.Server)
		if !known || !m.Status().Healthy {
			return nil, nil, false, fmt.Errorf("%w: volume %q is being copied to storage server %q, which is not answering now", errUnavailable, cv.ID, rec.Server)
		}
		return m, src, true, nil
	}
	if src.Status().Available >= cv.Capacity {
		return src, nil, false, nil
	}
	ms, err := c.placeAway(1, cv.Capacity, []string{src.Name}, nil) // a copy, not a replica: any zone
	if err != nil {
		return src, nil, false, nil // nowhere else either: src answers for itself
	}
	return ms[0], src, false, nil
}

// copyElsewhere is the fallback after src refused a clone or restore for
// lack of space: another server with room, or nil.
func (c *ControllerServer) copyElsewhere(cv api.CreateVolume, src *registry.Member) *registry.Member {
	if cv.Source.Kind == api.SourceNone {
		return nil
	}
	ms, err := c.placeAway(1, cv.Capacity, []string{src.Name}, nil) // a copy, not a replica: any zone
	if err != nil {
		return nil
	}
	return ms[0]
}

// copyCreate has src send the snapshot named in fwd (src's own ID), or a
// temporary snapshot of the volume named there, to dst as the new volume,
// and answers as dst's CreateVolume would. A volume dst holds already (a
// retry) is not copied again; a temporary snapshot is deleted either way.
func (c *ControllerServer) copyCreate(ctx context.Context, src, dst *registry.Member, cv api.CreateVolume, req, fwd *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if cv.Source.Kind == api.SourceVolume {
		defer c.dropCloneSnapshot(ctx, cv, src)
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	if got, err := dst.Controller.ControllerGetVolume(cctx, &csi.ControllerGetVolumeRequest{VolumeId: cv.ID}); err == nil {
		return &csi.CreateVolumeResponse{Volume: got.GetVolume()}, nil
	}
	rs, err := replService(src)
	if err != nil {
		return nil, err
	}
	snap := fwd.GetVolumeContentSource().GetSnapshot().GetSnapshotId()
	if cv.Source.Kind == api.SourceVolume {
		if snap, err = c.cloneSnapshot(ctx, cv, req, src); err != nil {
			return nil, err
		}
	}
	klog.InfoS("Cloning or restoring on another server: the source's has no room, so it is copied whole (O(data), slower than a clone)",
		"volume", cv.ID, "source", cv.Source.ID, "snapshot", snap, "from", src.Name, "to", dst.Name, "capacity", cv.Capacity)
	if err := rs.Copy(cctx, api.CopyRequest{Snapshot: snap, To: api.Peer{Server: dst.Name, Address: dst.APIAddress},
		Name: cv.ID, Capacity: cv.Capacity, Parameters: fwd.GetParameters()}); err != nil {
		return nil, fmt.Errorf("copying snapshot %s from %s to %s: %w", snap, src.Name, dst.Name, err)
	}
	got, err := dst.Controller.ControllerGetVolume(cctx, &csi.ControllerGetVolumeRequest{VolumeId: cv.ID})
	if err != nil {
		return nil, fmt.Errorf("volume %q copied to %s, but reading it there: %w", cv.ID, dst.Name, err)
	}
	v := got.GetVolume()
	delete(v.VolumeContext, api.ContextUsedBytes) // reported, never recorded in a PV
	return &csi.CreateVolumeResponse{Volume: v}, nil
}

// cloneSnapshotName is the temporary snapshot a cross-server clone of a
// volume is copied from: one per new volume, so a retry takes (or finds)
// the same one.
func cloneSnapshotName(cv api.CreateVolume) string { return api.IDFor("dots-clone-" + cv.ID) }

// cloneSnapshot takes the temporary snapshot of a clone's source volume
// (through this controller: recorded like any snapshot, so its name is
// the cluster's) and returns its ID on src.
func (c *ControllerServer) cloneSnapshot(ctx context.Context, cv api.CreateVolume, req *csi.CreateVolumeRequest, src *registry.Member) (string, error) {
	source := req.GetVolumeContentSource().GetVolume().GetVolumeId()
	resp, err := c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: cloneSnapshotName(cv), SourceVolumeId: source, Secrets: req.GetSecrets()})
	if err != nil {
		return "", fmt.Errorf("a snapshot of %s to copy it from %s: %w", source, src.Name, err)
	}
	server, id, err := api.ParseID(resp.GetSnapshot().GetSnapshotId())
	switch {
	case err != nil:
		return "", err
	case server != src.Name:
		// The source's primary moved meanwhile: the next try copies from
		// where it is now.
		return "", fmt.Errorf("%w: the snapshot of %s to copy was taken on %s, not %s", errUnavailable, source, server, src.Name)
	}
	return id, nil
}

// dropCloneSnapshot deletes a clone's temporary snapshot, if any: after
// the copy, after a failed one (the retry takes a new one), and on a retry
// that finds the copy made. A failure is logged: the snapshot stays, named
// after the volume, until the next retry or by hand.
func (c *ControllerServer) dropCloneSnapshot(ctx context.Context, cv api.CreateVolume, src *registry.Member) {
	id := api.FormatID(src.Name, cloneSnapshotName(cv))
	if _, err := c.DeleteSnapshot(context.WithoutCancel(ctx), &csi.DeleteSnapshotRequest{SnapshotId: id}); err != nil {
		klog.ErrorS(err, "Deleting a clone's temporary snapshot failed; it stays", "volume", cv.ID, "snapshot", id)
	}
}

// withSource sets a copied volume's content source to the request's (the
// cluster's IDs): a volume made from a source must say so.
func withSource(v *csi.Volume, req *csi.CreateVolumeRequest) {
	if v != nil && req.GetVolumeContentSource() != nil {
		v.ContentSource = proto.Clone(req.GetVolumeContentSource()).(*csi.VolumeContentSource)
	}
}
