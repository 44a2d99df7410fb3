package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/proto"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// errSpansServers: a group snapshot of volumes on several servers. Each
// server's pool takes its members in one transaction group, but no two
// pools share one: the members would be taken at different instants,
// which is not crash-consistent.
var errSpansServers = errors.New("group snapshot spans storage servers")

// GroupControllerGetCapabilities lists the group RPCs.
func (c *ControllerServer) GroupControllerGetCapabilities(context.Context, *csi.GroupControllerGetCapabilitiesRequest) (*csi.GroupControllerGetCapabilitiesResponse, error) {
	return &csi.GroupControllerGetCapabilitiesResponse{Capabilities: api.GroupControllerCapabilities()}, nil
}

func clusterGroup(m *registry.Member, g *csi.VolumeGroupSnapshot) *csi.VolumeGroupSnapshot {
	out := proto.Clone(g).(*csi.VolumeGroupSnapshot)
	out.GroupSnapshotId = api.FormatID(m.Name, g.GetGroupSnapshotId())
	for i, s := range g.GetSnapshots() {
		out.Snapshots[i] = clusterSnapshot(m, s)
		out.Snapshots[i].GroupSnapshotId = out.GroupSnapshotId
	}
	return out
}

// CreateVolumeGroupSnapshot forwards to the one server holding every
// member volume; volumes on several servers are refused (errSpansServers).
// The group and its members are recorded as snapshots are, so their names
// stay unique in the cluster and their deletes route like any snapshot's.
func (c *ControllerServer) CreateVolumeGroupSnapshot(ctx context.Context, req *csi.CreateVolumeGroupSnapshotRequest) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	if err := api.CheckGroupRequest(req.GetName(), req.GetSourceVolumeIds()); err != nil {
		return nil, err
	}
	var m *registry.Member
	vols := make([]string, 0, len(req.GetSourceVolumeIds()))
	servers := map[string][]string{}
	for _, cid := range req.GetSourceVolumeIds() {
		vm, vol, err := c.member(ctx, "volume", cid)
		if err != nil {
			return nil, err
		}
		m = vm
		vols = append(vols, vol)
		servers[vm.Name] = append(servers[vm.Name], cid)
	}
	if len(servers) > 1 {
		var parts []string
		for _, s := range slices.Sorted(maps.Keys(servers)) {
			parts = append(parts, fmt.Sprintf("%s holds %s", s, strings.Join(servers[s], ", ")))
		}
		return nil, fmt.Errorf("%w: %s; one group snapshot is crash-consistent only within one server's pool", errSpansServers, strings.Join(parts, "; "))
	}
	id := api.IDFor(req.GetName())
	unlock, err := c.locks.Acquire("group/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// The group's own name is recorded too (in the snapshots' namespace,
	// where Kubernetes' names never collide with it), so the same name
	// with volumes on another server is refused instead of making a second
	// group there.
	recs := make([]placements.Record, 0, len(vols)+1)
	groupRec := placements.Record{Kind: placements.Snapshot, ID: id, Server: m.Name}
	if err := c.placements.Put(ctx, groupRec); err != nil {
		return nil, c.placementErr(err)
	}
	recs = append(recs, groupRec)
	for _, v := range vols {
		rec := placements.Record{Kind: placements.Snapshot, ID: api.GroupMemberID(id, v), Server: m.Name}
		if err := c.placements.Put(ctx, rec); err != nil {
			return nil, c.placementErr(err)
		}
		recs = append(recs, rec)
	}
	resp, err := relay(ctx, c.opts.CallTimeout, req, func(r *csi.CreateVolumeGroupSnapshotRequest) { r.SourceVolumeIds = vols },
		m.Group.CreateVolumeGroupSnapshot)
	if err != nil {
		for _, rec := range recs {
			c.createFailed(ctx, rec, m, err)
		}
		return nil, err
	}
	return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: clusterGroup(m, resp.GetGroupSnapshot())}, nil
}

// serverIDs strips the server from the members' cluster IDs; an ID of
// another server cannot be a member.
func serverIDs(m *registry.Member, ids []string) ([]string, error) {
	out := make([]string, 0, len(ids))
	for _, cid := range ids {
		srv, id, err := api.ParseID(cid)
		if err != nil || srv != m.Name {
			return nil, fmt.Errorf("%w: snapshot_ids: %q is not a snapshot of storage server %q", api.ErrInvalid, cid, m.Name)
		}
		out = append(out, id)
	}
	return out, nil
}

// DeleteVolumeGroupSnapshot relays to the holding server and drops the
// members' placements.
func (c *ControllerServer) DeleteVolumeGroupSnapshot(ctx context.Context, req *csi.DeleteVolumeGroupSnapshotRequest) (*csi.DeleteVolumeGroupSnapshotResponse, error) {
	if err := api.Required("group_snapshot_id", req.GetGroupSnapshotId()); err != nil {
		return nil, err
	}
	m, id, err := c.memberForDelete(ctx, placements.Snapshot, req.GetGroupSnapshotId())
	if err != nil || m == nil {
		return &csi.DeleteVolumeGroupSnapshotResponse{}, err
	}
	ids, err := serverIDs(m, req.GetSnapshotIds())
	if err != nil {
		return nil, err
	}
	unlock, err := c.locks.Acquire("group/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rctx, rcancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
	defer rcancel()
	// The members' IDs, for their placements; a group gone already has
	// none left to drop.
	var members []string
	if g, err := m.Group.GetVolumeGroupSnapshot(rctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: id, Secrets: req.GetSecrets()}); err == nil {
		for _, s := range g.GetGroupSnapshot().GetSnapshots() {
			members = append(members, s.GetSnapshotId())
		}
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	if _, err := m.Group.DeleteVolumeGroupSnapshot(cctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: id, SnapshotIds: ids, Secrets: req.GetSecrets()}); err != nil {
		return nil, err
	}
	for _, sid := range append(members, id) { // the members', then the group's own
		if err := c.placements.Delete(ctx, placements.Record{Kind: placements.Snapshot, ID: sid, Server: m.Name}); err != nil {
			c.logPlacementLeft(placements.Snapshot, sid, m.Name, err)
		}
	}
	return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
}

// GetVolumeGroupSnapshot relays to the holding server.
func (c *ControllerServer) GetVolumeGroupSnapshot(ctx context.Context, req *csi.GetVolumeGroupSnapshotRequest) (*csi.GetVolumeGroupSnapshotResponse, error) {
	if err := api.Required("group_snapshot_id", req.GetGroupSnapshotId()); err != nil {
		return nil, err
	}
	m, id, err := c.member(ctx, "group snapshot", req.GetGroupSnapshotId())
	if err != nil {
		return nil, err
	}
	ids, err := serverIDs(m, req.GetSnapshotIds())
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
	defer cancel()
	resp, err := m.Group.GetVolumeGroupSnapshot(cctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: id, SnapshotIds: ids, Secrets: req.GetSecrets()})
	if err != nil {
		return nil, err
	}
	return &csi.GetVolumeGroupSnapshotResponse{GroupSnapshot: clusterGroup(m, resp.GetGroupSnapshot())}, nil
}
