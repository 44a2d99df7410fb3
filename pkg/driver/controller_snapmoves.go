package driver

import (
	"context"
	"errors"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// User snapshots move with their volume: replicas carry them (pkg/zfs
// replica_usersnaps.go), and a promotion's new primary serves them. Their
// placement records then name the new primary, with the server their ID
// names as Origin, like a moved volume's: a snapshot ID SERVER/NAME keeps
// working (calls are routed by the record) and is answered as it was
// given.

// moveSnapshotRecords points the records of the user snapshots m (a new
// primary of volume, the server-local name) serves at m. A snapshot
// without a record (made before records existed) gets one, its origin the
// old primary from.
func (c *ControllerServer) moveSnapshotRecords(ctx context.Context, m *registry.Member, volume, from string) error {
	var errs []error
	token := ""
	for {
		lctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
		r, err := m.Controller.ListSnapshots(lctx, &csi.ListSnapshotsRequest{SourceVolumeId: volume, StartingToken: token})
		cancel()
		if err != nil {
			return fmt.Errorf("listing the snapshots of volume %q on %s: %w", volume, m.Name, err)
		}
		for _, e := range r.GetEntries() {
			if err := c.moveSnapshotRecord(ctx, e.GetSnapshot().GetSnapshotId(), m.Name, from); err != nil {
				errs = append(errs, err)
			}
		}
		if token = r.GetNextToken(); token == "" {
			return errors.Join(errs...)
		}
	}
}

func (c *ControllerServer) moveSnapshotRecord(ctx context.Context, id, to, from string) error {
	rec, ok, err := c.placements.Lookup(ctx, placements.Snapshot, id)
	switch {
	case err != nil:
		return fmt.Errorf("reading snapshot %q's record: %w", id, err)
	case !ok:
		err = c.placements.Put(ctx, placements.Record{Kind: placements.Snapshot, ID: id, Server: to, Origin: from})
	case rec.Server == to:
		return nil
	default:
		err = c.placements.Update(ctx, rec, rec.Moved(to, nil, 0))
	}
	if err != nil {
		return fmt.Errorf("moving snapshot %q's record to %s: %w", id, to, err)
	}
	klog.V(2).InfoS("Snapshot record moved with its volume", "snapshot", id, "server", to, "from", from)
	return nil
}

// movedRecords maps the IDs of snapshots (and volumes) whose records
// moved to those records, for a listing to answer with the IDs they were
// created with. A store that cannot be read leaves IDs as the servers
// name them (logged): a listing is not refused for it.
func (c *ControllerServer) movedRecords(ctx context.Context) map[placements.Kind]map[string]placements.Record {
	out := map[placements.Kind]map[string]placements.Record{placements.Snapshot: {}, placements.Volume: {}}
	recs, err := c.placements.List(ctx)
	if err != nil {
		klog.ErrorS(err, "Reading placement records for a snapshot listing: moved snapshots are listed under their server's IDs")
		return out
	}
	for _, r := range recs {
		if r.Origin != "" && out[r.Kind] != nil {
			out[r.Kind][r.ID] = r
		}
	}
	return out
}

// originalSnapshotIDs gives a snapshot listed by m the IDs it and its
// source volume were created with, when their records moved to m.
func originalSnapshotIDs(m *registry.Member, s *csi.Snapshot, moved map[placements.Kind]map[string]placements.Record) {
	for _, f := range []struct {
		kind placements.Kind
		id   *string
	}{{placements.Snapshot, &s.SnapshotId}, {placements.Volume, &s.SourceVolumeId}} {
		_, id, err := api.ParseID(*f.id)
		if err != nil {
			continue
		}
		if r, ok := moved[f.kind][id]; ok && r.Server == m.Name {
			*f.id = r.ClusterID()
		}
	}
}
