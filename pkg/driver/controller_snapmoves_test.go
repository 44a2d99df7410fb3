package driver

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/placements"
)

// A moved snapshot's record names its new server with its ID's server as
// Origin (made when it had none); calls by its ID go to the new server,
// and listings give it (and its moved volume) the IDs they were created
// with.
func TestSnapshotRecordsMove(t *testing.T) {
	a, b := newFakeServer(t, "srv-a", 10*gib), newFakeServer(t, "srv-b", 10*gib)
	c := newReplCluster(a, b).controller(t, ControllerOptions{})
	ctx := context.Background()
	if err := c.placements.Put(ctx, placements.Record{Kind: placements.Snapshot, ID: "s1", Server: "srv-a"}); err != nil {
		t.Fatal(err)
	}
	vol := placements.Record{Kind: placements.Volume, ID: "v", Server: "srv-a", Replicas: []string{"srv-b"}}
	if err := c.placements.Put(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if err := c.placements.Update(ctx, vol, vol.Moved("srv-b", []string{"srv-a"}, 2)); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time: nothing to change
		for _, id := range []string{"s1", "s2"} {
			if err := c.moveSnapshotRecord(ctx, id, "srv-b", "srv-a"); err != nil {
				t.Fatal(err)
			}
			rec, ok, err := c.placements.Lookup(ctx, placements.Snapshot, id)
			if err != nil || !ok || rec.Server != "srv-b" || rec.ClusterID() != "srv-a/"+id {
				t.Fatalf("record of %s after the move: %+v %t %v", id, rec, ok, err)
			}
		}
	}
	m, id, err := c.member(ctx, string(placements.Snapshot), "srv-a/s1")
	if err != nil || m.Name != "srv-b" || id != "s1" {
		t.Fatalf("snapshot srv-a/s1 routed to %v %q: %v", m, id, err)
	}
	s := &csi.Snapshot{SnapshotId: "srv-b/s1", SourceVolumeId: "srv-b/v"}
	originalSnapshotIDs(m, s, c.movedRecords(ctx))
	if s.SnapshotId != "srv-a/s1" || s.SourceVolumeId != "srv-a/v" {
		t.Errorf("listed as %s of %s, want srv-a/s1 of srv-a/v", s.SnapshotId, s.SourceVolumeId)
	}
	// A snapshot made on the new server, and one of the old server that
	// is listed there (its record names srv-b, not srv-a), keep their IDs.
	for _, want := range []string{"srv-b/s3", "srv-a/s1"} {
		srv := c.mustMember(t, want[:5])
		got := &csi.Snapshot{SnapshotId: want, SourceVolumeId: want[:5] + "/w"}
		originalSnapshotIDs(srv, got, c.movedRecords(ctx))
		if got.SnapshotId != want || got.SourceVolumeId != want[:5]+"/w" {
			t.Errorf("%s listed by %s as %s of %s", want, srv.Name, got.SnapshotId, got.SourceVolumeId)
		}
	}
}
