package driver

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/proto"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

func clusterSnapshot(m *registry.Member, s *csi.Snapshot) *csi.Snapshot {
	out := proto.Clone(s).(*csi.Snapshot)
	out.SnapshotId = api.FormatID(m.Name, s.GetSnapshotId())
	out.SourceVolumeId = api.FormatID(m.Name, s.GetSourceVolumeId())
	return out
}

// CreateSnapshot snapshots on the server holding the source volume. Snapshot
// names are unique across the cluster: another server holding the name
// answers AlreadyExists.
func (c *ControllerServer) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	name := req.GetName()
	if err := api.Required("name", name); err != nil {
		return nil, err
	}
	if err := api.Required("source_volume_id", req.GetSourceVolumeId()); err != nil {
		return nil, err
	}
	if err := api.ValidateName(name); err != nil {
		return nil, err
	}
	m, vol, err := c.member(ctx, "volume", req.GetSourceVolumeId())
	if err != nil {
		return nil, err
	}
	id := api.IDFor(name)
	unlock, err := c.locks.Acquire("snapshot/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Snapshot names are unique in the cluster: the record of this name
	// on another server refuses it, without asking every server.
	rec := placements.Record{Kind: placements.Snapshot, ID: id, Server: m.Name}
	if err := c.placements.Put(ctx, rec); err != nil {
		return nil, c.placementErr(err)
	}
	resp, err := relay(ctx, c.opts.CallTimeout, req, func(r *csi.CreateSnapshotRequest) { r.SourceVolumeId = vol },
		m.Controller.CreateSnapshot)
	if err != nil {
		c.createFailed(ctx, rec, m, err)
		return nil, err
	}
	snap := clusterSnapshot(m, resp.GetSnapshot())
	snap.SourceVolumeId = req.GetSourceVolumeId() // kept when the primary moved
	return &csi.CreateSnapshotResponse{Snapshot: snap}, nil
}

// DeleteSnapshot relays to the holding server; see DeleteVolume for IDs of
// servers not known now.
func (c *ControllerServer) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if err := api.Required("snapshot_id", req.GetSnapshotId()); err != nil {
		return nil, err
	}
	m, id, err := c.memberForDelete(ctx, placements.Snapshot, req.GetSnapshotId())
	if err != nil || m == nil {
		return &csi.DeleteSnapshotResponse{}, err
	}
	unlock, err := c.locks.Acquire("snapshot/" + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	if _, err := m.Controller.DeleteSnapshot(cctx, &csi.DeleteSnapshotRequest{SnapshotId: id, Secrets: req.GetSecrets()}); err != nil {
		return nil, err
	}
	if err := c.placements.Delete(ctx, placements.Record{Kind: placements.Snapshot, ID: id, Server: m.Name}); err != nil {
		c.logPlacementLeft(placements.Snapshot, id, m.Name, err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// GetSnapshot relays to the holding server.
func (c *ControllerServer) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	if err := api.Required("snapshot_id", req.GetSnapshotId()); err != nil {
		return nil, err
	}
	m, id, rec, err := c.routed(ctx, string(placements.Snapshot), req.GetSnapshotId())
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
	defer cancel()
	resp, err := m.Controller.GetSnapshot(cctx, &csi.GetSnapshotRequest{SnapshotId: id, Secrets: req.GetSecrets()})
	if err != nil {
		return nil, err
	}
	snap := clusterSnapshot(m, resp.GetSnapshot())
	if rec.Origin != "" {
		// It moved with its volume: answered with the IDs it and its
		// volume were created with.
		moved := map[placements.Kind]map[string]placements.Record{placements.Snapshot: {rec.ID: rec}, placements.Volume: {}}
		if _, vol, err := api.ParseID(snap.GetSourceVolumeId()); err == nil {
			if vrec, ok, err := c.placements.Lookup(ctx, placements.Volume, vol); err == nil && ok {
				moved[placements.Volume][vol] = vrec
			}
		}
		originalSnapshotIDs(m, snap, moved)
	}
	return &csi.GetSnapshotResponse{Snapshot: snap}, nil
}

// ListSnapshots lists by snapshot ID or source volume (one server), or all.
func (c *ControllerServer) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	fwd := &csi.ListSnapshotsRequest{MaxEntries: req.GetMaxEntries(), StartingToken: req.GetStartingToken(), Secrets: req.GetSecrets()}
	var only *registry.Member
	for _, f := range []struct {
		kind placements.Kind
		id   string
		dest *string
	}{{placements.Snapshot, req.GetSnapshotId(), &fwd.SnapshotId}, {placements.Volume, req.GetSourceVolumeId(), &fwd.SourceVolumeId}} {
		if f.id == "" {
			continue
		}
		m, name, err := c.member(ctx, string(f.kind), f.id)
		if errors.Is(err, errUnavailable) {
			return nil, err // it may be there
		}
		if err != nil || (only != nil && only != m) {
			return &csi.ListSnapshotsResponse{}, nil // nothing can match
		}
		only, *f.dest = m, name
	}
	resp := &csi.ListSnapshotsResponse{}
	moved := c.movedRecords(ctx)
	add := func(m *registry.Member, r *csi.ListSnapshotsResponse) {
		for _, e := range r.GetEntries() {
			s := clusterSnapshot(m, e.GetSnapshot())
			originalSnapshotIDs(m, s, moved)
			resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: s})
		}
	}
	if only != nil {
		sctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
		defer cancel()
		r, err := only.Controller.ListSnapshots(sctx, fwd)
		if err != nil {
			return nil, err
		}
		add(only, r)
		resp.NextToken = r.GetNextToken()
		return resp, nil
	}
	next, err := c.walk(ctx, "ListSnapshots", req.GetStartingToken(), req.GetMaxEntries(), func(ctx context.Context, m *registry.Member, token string, max int32) (int, string, error) {
		r, err := m.Controller.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: token, MaxEntries: max, Secrets: req.GetSecrets()})
		if err != nil {
			return 0, "", err
		}
		add(m, r)
		return len(r.GetEntries()), r.GetNextToken(), nil
	})
	if err != nil {
		return nil, err
	}
	resp.NextToken = next
	return resp, nil
}
