//go:build integration

package replicas

import (
	"context"
	"path"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/replenv"
	"github.com/dots-csi/dots/pkg/api"
)

// TestHandoverAndCopy: the controller's moves between live servers. A
// handover stops the primary and sends a final snapshot; the replica
// promoted at it serves every write (none lost), and the old primary
// follows it as a replica. A snapshot copied to another server is a new
// volume there with the snapshot's bytes.
func TestHandoverAndCopy(t *testing.T) {
	srv := cluster(t, 2)
	a, b := srv[0], srv[1]
	every := interval()
	v := newVolume(t, a, "moved", 128<<20, time.Hour, b) // only the handover sends
	for _, n := range []string{"one", "two"} {
		v.mustWrite(t, a, n, replenv.RandomData(t, 512<<10))
	}
	ctx := context.Background()
	start := time.Now()
	res, err := a.Replication().Handover(ctx, api.HandoverRequest{Volume: v.id})
	t.Logf("handover: %s", time.Since(start))
	if err != nil {
		t.Fatalf("handover: %v", err)
	}
	if a.Exported(t)[v.export] {
		t.Fatalf("%s still exports %s after handing it over", a.Name, v.export)
	}
	ast, err := a.Replication().State(ctx, v.id)
	if err != nil || ast.Role != api.RoleReplica || ast.Latest != res.Final {
		t.Fatalf("%s after the handover: %+v, %v", a.Name, ast, err)
	}
	if _, err := b.Replication().Promote(ctx, api.PromoteRequest{Volume: v.id, Generation: ast.Generation + 1, Expect: res.Final,
		Interval: every, Replicas: []api.Peer{a.Peer()}}); err != nil {
		t.Fatalf("promote at %s: %v", res.Final, err)
	}
	for name, sum := range v.files {
		if data, err := readNFS(t, b, v.export, name); err != nil || replenv.Sum(data) != sum {
			t.Fatalf("%s on the new primary: %v", name, err)
		}
	}
	t.Logf("promoted and read: %s", time.Since(start))
	v.mustWrite(t, b, "three", replenv.RandomData(t, 64<<10))
	replenv.WaitSynced(t, a, v.id, time.Now(), 30*every)
	t.Logf("old primary in sync: %s", time.Since(start))
	sums, snap := replicaSums(t, a, v.id)
	sameFiles(t, "the old primary's replica at "+snap, v.files, sums)

	// A snapshot copied to the other server.
	snapResp, err := b.CSI().CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: v.id, Name: "moved-snap"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Replication().Copy(ctx, api.CopyRequest{Snapshot: snapResp.GetSnapshot().GetSnapshotId(), To: a.Peer(),
		Name: "copied", Capacity: 128 << 20}); err != nil {
		t.Fatalf("copy: %v", err)
	}
	t.Logf("copied: %s", time.Since(start))
	var exported bool
	poll.Until(t, 30*time.Second, "the copy exported by "+a.Name, func() error {
		if exported = a.Exported(t)[path.Join(path.Dir(v.export), "copied")]; !exported {
			return errNotYet
		}
		return nil
	})
	for name, sum := range v.files {
		if data, err := readNFS(t, a, path.Join(path.Dir(v.export), "copied"), name); err != nil || replenv.Sum(data) != sum {
			t.Fatalf("%s in the copy on %s: %v", name, a.Name, err)
		}
	}
	got, err := a.CSI().ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "copied"})
	if err != nil || got.GetVolume().GetCapacityBytes() != 128<<20 {
		t.Fatalf("the copy on %s: %v, %v", a.Name, got, err)
	}
	t.Logf("copy read: %s", time.Since(start))
}
