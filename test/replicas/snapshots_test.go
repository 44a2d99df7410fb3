//go:build integration

package replicas

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/replenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/driver"
)

// snapOf writes data to a volume, snapshots it through the controller and
// writes another file, which the snapshot does not hold.
func snapOf(t *testing.T, c *driver.ControllerServer, s *replenv.Server, volID, export, name string) (snapID, sum string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data := replenv.RandomData(t, 256<<10)
	if err := s.NFS().WriteFile(ctx, export, "data", data); err != nil {
		t.Fatal(err)
	}
	resp, err := c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: volID})
	if err != nil {
		t.Fatalf("snapshot %s of %s: %v", name, volID, err)
	}
	if err := s.NFS().WriteFile(ctx, export, "after", replenv.RandomData(t, 128<<10)); err != nil {
		t.Fatal(err)
	}
	return resp.GetSnapshot().GetSnapshotId(), replenv.Sum(data)
}

// snapshotKept checks a snapshot after its volume moved: GetSnapshot by
// its original ID answers with that ID, ListSnapshots lists it once, and a
// volume restored from it (on the server now holding it) has its data.
func snapshotKept(t *testing.T, c *driver.ControllerServer, servers []*replenv.Server, snapID, volID, sum, restore string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := c.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: snapID})
	if err != nil {
		t.Fatalf("GetSnapshot %s after its volume moved: %v", snapID, err)
	}
	if s := got.GetSnapshot(); s.GetSnapshotId() != snapID || s.GetSourceVolumeId() != volID || !s.GetReadyToUse() {
		t.Errorf("GetSnapshot %s answered %v; want its ID and source %s", snapID, s, volID)
	}
	list, err := c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list.GetEntries() {
		if e.GetSnapshot().GetSnapshotId() == snapID {
			n++
		}
	}
	if n != 1 {
		t.Errorf("ListSnapshots lists %s %d times: %v", snapID, n, list.GetEntries())
	}
	rid, export, primary := ctlVolumeFrom(t, c, restore, snapID)
	if got := readSum(t, byName(servers, primary), export, "data"); got != sum {
		t.Errorf("%s restored from %s on %s: checksum %s, snapshot held %s", rid, snapID, primary, got, sum)
	}
	if _, err := readNFS(t, byName(servers, primary), export, "after"); err == nil {
		t.Errorf("%s restored from %s holds a file written after the snapshot", rid, snapID)
	}
}

// ctlVolumeFrom restores a volume from a snapshot through the controller.
func ctlVolumeFrom(t *testing.T, c *driver.ControllerServer, name, snapID string) (id, export, primary string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapID}}},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}})
	if err != nil {
		t.Fatalf("restoring %s from %s: %v", name, snapID, err)
	}
	v := resp.GetVolume()
	return v.GetVolumeId(), v.GetVolumeContext()[api.ContextExport], v.GetVolumeContext()[api.ContextServer]
}

// TestControllerSnapshotsMove: user snapshots move with their volume. An
// unreplicated volume's snapshot survives a drain of its server (carried
// by the new replica's full stream); a replicated volume's survives a
// promotion (carried by the handover's final increment). Both keep their
// IDs. (The drain comes first: a volume whose snapshot has a clone, as a
// restore makes one, cannot be handed over on zfs-fuse; see README.)
func TestControllerSnapshotsMove(t *testing.T) {
	servers, c, _ := ctlCluster(t, 3, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	plainID, plainExport, _ := ctlVolume(t, c, "snaps-plain", map[string]string{api.ParamServer: servers[0].Name})
	plainSnap, plainSum := snapOf(t, c, servers[0], plainID, plainExport, "snap-plain")
	start := time.Now()
	var last api.MoveEvent
	if err := c.Drain(ctx, servers[0].Name, func(ev api.MoveEvent) { last = ev }); err != nil {
		t.Fatal(err)
	}
	if last.Kind != api.MoveDone || last.Failed != 0 || last.Done != 1 {
		t.Fatalf("drain ended %+v", last)
	}
	took := time.Since(start)
	snapshotKept(t, c, servers, plainSnap, plainID, plainSum, "snaps-restored-1")

	repID, repExport, repPrimary := ctlVolume(t, c, "snaps-replicated", map[string]string{api.ParamServer: servers[1].Name,
		api.ParamReplicas: "2", api.ParamReplicationInterval: interval().String()})
	repSnap, repSum := snapOf(t, c, byName(servers, repPrimary), repID, repExport, "snap-replicated")
	res, err := c.Promote(ctx, repID, "", driver.ReasonManual)
	if err != nil {
		t.Fatal(err)
	}
	if res.To == repPrimary || !res.HandedOver {
		t.Fatalf("promotion %+v", res)
	}
	snapshotKept(t, c, servers, repSnap, repID, repSum, "snaps-restored-2")
	fmt.Printf("snapshots-move: drained_volumes=%d drain_s=%.1f promoted=1\n", last.Done, took.Seconds())
}
