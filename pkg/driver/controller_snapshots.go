package driver

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
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
	m, vol, err := c.member("volume", req.GetSourceVolumeId())
	if err != nil {
		return nil, err
	}
	unlock, err := c.locks.Acquire("snapshot/" + api.IDFor(name))
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, other := range c.servers.List() {
		if other == m {
			continue
		}
		r, err := other.Controller.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: api.IDFor(name)})
		if err != nil {
			klog.InfoS("Storage server not asked for an existing snapshot", "server", other.Name, "snapshot", name, "err", err)
			continue
		}
		if len(r.GetEntries()) > 0 {
			return nil, fmt.Errorf("%w: snapshot %q exists on server %q for another volume", errExists, name, other.Name)
		}
	}
	fwd := proto.Clone(req).(*csi.CreateSnapshotRequest)
	fwd.SourceVolumeId = vol
	resp, err := m.Controller.CreateSnapshot(ctx, fwd)
	if err != nil {
		return nil, err
	}
	return &csi.CreateSnapshotResponse{Snapshot: clusterSnapshot(m, resp.GetSnapshot())}, nil
}

// DeleteSnapshot relays to the holding server; an ID no server can hold is
// already deleted.
func (c *ControllerServer) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if err := api.Required("snapshot_id", req.GetSnapshotId()); err != nil {
		return nil, err
	}
	m, name, err := c.member("snapshot", req.GetSnapshotId())
	if err != nil {
		klog.InfoS("Deleting a snapshot no server can hold: nothing to do", "snapshot", req.GetSnapshotId(), "reason", err)
		return &csi.DeleteSnapshotResponse{}, nil
	}
	unlock, err := c.locks.Acquire("snapshot/" + name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return m.Controller.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: name, Secrets: req.GetSecrets()})
}

// GetSnapshot relays to the holding server.
func (c *ControllerServer) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	if err := api.Required("snapshot_id", req.GetSnapshotId()); err != nil {
		return nil, err
	}
	m, name, err := c.member("snapshot", req.GetSnapshotId())
	if err != nil {
		return nil, err
	}
	resp, err := m.Controller.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: name, Secrets: req.GetSecrets()})
	if err != nil {
		return nil, err
	}
	return &csi.GetSnapshotResponse{Snapshot: clusterSnapshot(m, resp.GetSnapshot())}, nil
}

// ListSnapshots lists by snapshot ID or source volume (one server), or all.
func (c *ControllerServer) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	fwd := &csi.ListSnapshotsRequest{MaxEntries: req.GetMaxEntries(), StartingToken: req.GetStartingToken(), Secrets: req.GetSecrets()}
	var only *registry.Member
	for _, f := range []struct {
		id   string
		dest *string
	}{{req.GetSnapshotId(), &fwd.SnapshotId}, {req.GetSourceVolumeId(), &fwd.SourceVolumeId}} {
		if f.id == "" {
			continue
		}
		m, name, err := c.member("id", f.id)
		if err != nil || (only != nil && only != m) {
			return &csi.ListSnapshotsResponse{}, nil // nothing can match
		}
		only, *f.dest = m, name
	}
	resp := &csi.ListSnapshotsResponse{}
	add := func(m *registry.Member, r *csi.ListSnapshotsResponse) {
		for _, e := range r.GetEntries() {
			resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: clusterSnapshot(m, e.GetSnapshot())})
		}
	}
	if only != nil {
		r, err := only.Controller.ListSnapshots(ctx, fwd)
		if err != nil {
			return nil, err
		}
		add(only, r)
		resp.NextToken = r.GetNextToken()
		return resp, nil
	}
	next, err := c.walk(req.GetStartingToken(), req.GetMaxEntries(), func(m *registry.Member, token string, max int32) (int, string, error) {
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
