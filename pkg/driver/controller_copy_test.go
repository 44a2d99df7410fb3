package driver

import (
	"context"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
)

func restoreReq(name string, size int64, snapshot string) *csi.CreateVolumeRequest {
	r := createReq(name, size, nil)
	r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapshot}}}
	return r
}

// TestRestoreCopiedElsewhere: a restore whose snapshot's server has no
// room (by its cached free space, or by its answer) is created on another
// server by a copy from the snapshot's; one with room stays a local clone.
func TestRestoreCopiedElsewhere(t *testing.T) {
	a, b := newFakeServer(t, "srv-a", gib/2), newFakeServer(t, "srv-b", 20*gib)
	rc := newReplCluster(a, b)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()

	resp, err := c.CreateVolume(ctx, restoreReq("restored", gib, "srv-a/snap-1"))
	if err != nil {
		t.Fatal(err)
	}
	v := resp.GetVolume()
	if v.GetVolumeId() != "srv-b/restored" || v.GetContentSource().GetSnapshot().GetSnapshotId() != "srv-a/snap-1" {
		t.Fatalf("restored %v", v)
	}
	if rec := record(t, c, "restored"); rec.Server != "srv-b" {
		t.Errorf("record %+v", rec)
	}
	rc.mu.Lock()
	calls := append([]string(nil), rc.calls...)
	rc.mu.Unlock()
	if len(calls) != 1 || calls[0] != "srv-a Copy restored" {
		t.Errorf("replication calls %v, want one Copy by srv-a", calls)
	}
	// A retry finds the copy and copies nothing again.
	if _, err := c.CreateVolume(ctx, restoreReq("restored", gib, "srv-a/snap-1")); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	n := len(rc.calls)
	rc.mu.Unlock()
	if n != 1 {
		t.Errorf("a retry copied again: %d calls", n)
	}

	// Room by the cache, refused by the server: copied all the same.
	a.setFree(10 * gib)
	c.servers.ProbeNow(ctx, c.mustMember(t, "srv-a"))
	a.mu.Lock()
	a.failCreates = status.Error(codes.ResourceExhausted, "no space")
	a.mu.Unlock()
	resp, err = c.CreateVolume(ctx, restoreReq("refused", gib, "srv-a/snap-1"))
	if err != nil || resp.GetVolume().GetVolumeId() != "srv-b/refused" {
		t.Fatalf("after a refusal for space: %v %v", resp, err)
	}
	// Room, and no refusal: a clone where the snapshot is.
	a.mu.Lock()
	a.failCreates = nil
	a.mu.Unlock()
	c.servers.ProbeNow(ctx, c.mustMember(t, "srv-a"))
	if resp, err = c.CreateVolume(ctx, restoreReq("local", gib, "srv-a/snap-1")); err != nil || resp.GetVolume().GetVolumeId() != "srv-a/local" {
		t.Fatalf("a local clone: %v %v", resp, err)
	}
}

func cloneReq(name string, size int64, volume string) *csi.CreateVolumeRequest {
	r := createReq(name, size, nil)
	r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: volume}}}
	return r
}

// TestCloneCopiedElsewhere: a clone of a volume whose server has no room
// is made on another server from a temporary snapshot of the source,
// which is deleted after; a copy that fails leaves no snapshot, its retry
// copies again, and a retry after the copy copies nothing.
func TestCloneCopiedElsewhere(t *testing.T) {
	a, b := newFakeServer(t, "srv-a", 20*gib), newFakeServer(t, "srv-b", 20*gib)
	rc := newReplCluster(a, b)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, createReq("src", gib, map[string]string{api.ParamServer: "srv-a"})); err != nil {
		t.Fatal(err)
	}
	a.setFree(gib / 2)
	c.servers.ProbeNow(ctx, c.mustMember(t, "srv-a"))
	snapsLeft := func() int {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.snaps)
	}
	snapRecords := func() int {
		recs, err := c.placements.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range recs {
			if r.Kind == placements.Snapshot {
				n++
			}
		}
		return n
	}

	// The first copy breaks: the create fails, the snapshot is gone.
	rc.mu.Lock()
	rc.failCopies = 1
	rc.mu.Unlock()
	if _, err := c.CreateVolume(ctx, cloneReq("clone", gib, "srv-a/src")); status.Code(err) != codes.Unavailable {
		t.Fatalf("a broken copy: %v, want Unavailable", err)
	}
	if n, r := snapsLeft(), snapRecords(); n != 0 || r != 0 {
		t.Fatalf("after a failed copy: %d snapshots on srv-a, %d snapshot records", n, r)
	}
	if rec := record(t, c, "clone"); rec.Server != "srv-b" {
		t.Fatalf("record %+v, want srv-b", rec)
	}
	// Its retry copies from a new temporary snapshot.
	resp, err := c.CreateVolume(ctx, cloneReq("clone", gib, "srv-a/src"))
	if err != nil {
		t.Fatal(err)
	}
	v := resp.GetVolume()
	if v.GetVolumeId() != "srv-b/clone" || v.GetContentSource().GetVolume().GetVolumeId() != "srv-a/src" {
		t.Fatalf("clone %v", v)
	}
	want := []string{"dots-clone-clone held=true", "dots-clone-clone held=true"}
	rc.mu.Lock()
	copied := append([]string(nil), rc.copied...)
	rc.mu.Unlock()
	if !slices.Equal(copied, want) {
		t.Errorf("copies %v, want %v", copied, want)
	}
	if n, r := snapsLeft(), snapRecords(); n != 0 || r != 0 {
		t.Errorf("after the copy: %d snapshots on srv-a, %d snapshot records", n, r)
	}
	// A retry after the copy finds the volume and copies nothing.
	if _, err := c.CreateVolume(ctx, cloneReq("clone", gib, "srv-a/src")); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	n := len(rc.copied)
	rc.mu.Unlock()
	if n != 2 || snapsLeft() != 0 {
		t.Errorf("a retry after the copy: %d copies, %d snapshots", n, snapsLeft())
	}
	// With room, a clone stays where its source is, with no snapshot.
	a.setFree(20 * gib)
	c.servers.ProbeNow(ctx, c.mustMember(t, "srv-a"))
	if resp, err = c.CreateVolume(ctx, cloneReq("local", gib, "srv-a/src")); err != nil || resp.GetVolume().GetVolumeId() != "srv-a/local" {
		t.Fatalf("a local clone: %v %v", resp, err)
	}
	if snapsLeft() != 0 || len(rc.copied) != 2 {
		t.Errorf("a local clone took a snapshot or copied")
	}
}
