//go:build integration

package driver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/internal/serverenv"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// TestGroupSnapshotRouting: with two real servers, a group of volumes on
// one server is forwarded there (cluster IDs, members recorded as
// snapshots, deleted with the group), and a group spanning both is refused
// with FailedPrecondition naming both servers.
func TestGroupSnapshotRouting(t *testing.T) {
	a, b := serverenv.Start(t, "dotsgrp16", "grp-a"), serverenv.Start(t, "dotsgrp16", "grp-b")
	reg := registry.New(discovery.Static{a.Discovery(), b.Discovery()}, testenv.ClientCreds(t), registry.Options{ProbeTimeout: 5 * time.Second}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	reg.Refresh(ctx)
	store := placements.NewMemory()
	c, err := NewControllerServer(reg, store, ControllerOptions{DefaultCapacity: 64 << 20, CallTimeout: time.Minute, ReadTimeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	create := func(name, srv string) string {
		t.Helper()
		r, err := c.CreateVolume(ctx, createReq(name, 64<<20, map[string]string{api.ParamServer: srv}))
		if err != nil {
			t.Fatal(err)
		}
		return r.GetVolume().GetVolumeId()
	}
	a1, a2, b1 := create("a1", "grp-a"), create("a2", "grp-a"), create("b1", "grp-b")

	_, err = c.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "across", SourceVolumeIds: []string{a1, b1}})
	if code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "grp-a holds "+a1) || !strings.Contains(err.Error(), "grp-b holds "+b1) {
		t.Fatalf("a group across servers: %v, want FailedPrecondition naming grp-a and grp-b", err)
	}

	resp, err := c.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "on-a", SourceVolumeIds: []string{a1, a2}})
	if err != nil {
		t.Fatal(err)
	}
	g := resp.GetGroupSnapshot()
	if g.GetGroupSnapshotId() != "grp-a/on-a" || len(g.GetSnapshots()) != 2 {
		t.Fatalf("group %+v: want grp-a/on-a with 2 members", g)
	}
	var ids []string
	for _, m := range g.GetSnapshots() {
		if !strings.HasPrefix(m.GetSnapshotId(), "grp-a/") || m.GetGroupSnapshotId() != g.GetGroupSnapshotId() {
			t.Fatalf("member %+v: want a snapshot ID of grp-a in group %s", m, g.GetGroupSnapshotId())
		}
		// An ordinary snapshot for the controller, with its placement.
		if _, err := c.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: m.GetSnapshotId()}); err != nil {
			t.Fatal(err)
		}
		_, id, _ := api.ParseID(m.GetSnapshotId())
		if srv, ok, err := store.Get(ctx, placements.Snapshot, id); err != nil || !ok || srv != "grp-a" {
			t.Fatalf("placement of member %s: %q %v %v, want grp-a", id, srv, ok, err)
		}
		ids = append(ids, m.GetSnapshotId())
	}
	// The name is the group's in the whole cluster: the same name over a
	// volume of the other server is refused, the same request answered.
	if _, err := c.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "on-a", SourceVolumeIds: []string{b1}}); code(err) != codes.AlreadyExists {
		t.Fatalf("group name on-a again over grp-b's volume: %v, want AlreadyExists", err)
	}
	if again, err := c.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "on-a", SourceVolumeIds: []string{a1, a2}}); err != nil ||
		again.GetGroupSnapshot().GetGroupSnapshotId() != g.GetGroupSnapshotId() {
		t.Fatalf("the same group request again: %v %v", again, err)
	}
	got, err := c.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: g.GetGroupSnapshotId(), SnapshotIds: ids})
	if err != nil || len(got.GetGroupSnapshot().GetSnapshots()) != 2 {
		t.Fatalf("GetVolumeGroupSnapshot: %v %v", got, err)
	}
	if _, err := c.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: g.GetGroupSnapshotId(), SnapshotIds: ids}); err != nil {
		t.Fatal(err)
	}
	for _, sid := range ids {
		if _, err := c.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: sid}); code(err) != codes.NotFound {
			t.Fatalf("member %s after the group's delete: %v, want NotFound", sid, err)
		}
		_, id, _ := api.ParseID(sid)
		if _, ok, _ := store.Get(ctx, placements.Snapshot, id); ok {
			t.Fatalf("member %s keeps its placement after the group's delete", sid)
		}
	}
	_, gid, _ := api.ParseID(g.GetGroupSnapshotId())
	if _, ok, _ := store.Get(ctx, placements.Snapshot, gid); ok {
		t.Fatalf("group %s keeps its placement after its delete", gid)
	}
}
