package server

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
)

// TestReconcile: a volume that would not mount is served once it mounts, a
// volume without its export gets it back, an export of nothing is
// withdrawn; a volume a call is working on is left to that call.
func TestReconcile(t *testing.T) {
	s, pool, exp, _ := newFakeServer(t)
	ctx := context.Background()
	for _, n := range []string{"ok", "unmounted", "unexported", "busy"} {
		if _, err := s.CreateVolume(ctx, createReq(n, 8<<20, nil, nil)); err != nil {
			t.Fatal(err)
		}
	}
	pool.unmount("unmounted", errors.New("directory is not empty"))
	if err := exp.Unexport(ctx, pool.vols["unmounted"].ExportID); err != nil {
		t.Fatal(err)
	}
	if err := exp.Unexport(ctx, pool.vols["unexported"].ExportID); err != nil {
		t.Fatal(err)
	}
	if err := exp.Unexport(ctx, pool.vols["busy"].ExportID); err != nil {
		t.Fatal(err)
	}
	exp.exports[999] = nfs.Export{ID: 999, Path: "/gone", Pseudo: "/dots/gone"}
	unlock, err := s.locks.Acquire(volumeKey("busy"))
	if err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	r := NewReconciler(s, reg)
	found := r.Reconcile(ctx)
	if found[orphanUnmounted] != 1 || found[orphanUnexported] != 2 || found[orphanExport] != 1 {
		t.Fatalf("found %v", found)
	}
	// Still failing to mount: not exported; health says why.
	if ids := exportIDs(exp); slices.Contains(ids, pool.vols["unmounted"].ExportID) || slices.Contains(ids, 999) {
		t.Fatalf("exports %v", ids)
	}
	h, err := s.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: "unmounted"})
	if err != nil || len(h.GetVolumeHealth().GetHealthStatuses()) != 1 ||
		h.GetVolumeHealth().GetHealthStatuses()[0].GetStatus() != csi.VolumeHealthErrorType_INACCESSIBLE {
		t.Fatalf("health of the unmounted volume: %v %v", h, err)
	}
	if !slices.Contains(exportIDs(exp), pool.vols["unexported"].ExportID) {
		t.Error("the unexported volume was not exported again")
	}
	if slices.Contains(exportIDs(exp), pool.vols["busy"].ExportID) {
		t.Error("a volume a call holds was touched")
	}
	if n := testutil.ToFloat64(r.orphans.WithLabelValues(orphanUnexported)); n != 2 {
		t.Errorf("dots_server_orphans{kind=unexported_volume} = %v", n)
	}

	// The mount works now: the next pass serves it.
	unlock()
	pool.mu.Lock()
	pool.mountErr = nil
	pool.mu.Unlock()
	r.Reconcile(ctx)
	found = r.Reconcile(ctx)
	if found[orphanUnmounted] != 0 || found[orphanUnexported] != 0 || found[orphanExport] != 0 {
		t.Fatalf("after repairs found %v", found)
	}
	for _, n := range []string{"ok", "unmounted", "unexported", "busy"} {
		if !slices.Contains(exportIDs(exp), pool.vols[n].ExportID) {
			t.Errorf("%s not exported", n)
		}
	}
	h, _ = s.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: "unmounted"})
	if len(h.GetVolumeHealth().GetHealthStatuses()) != 0 {
		t.Errorf("healthy volume reports %v", h.GetVolumeHealth())
	}
	list, err := s.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{MaxEntries: 2})
	if err != nil || len(list.GetEntries()) != 2 || list.GetNextToken() == "" {
		t.Errorf("ListVolumeHealth page: %v %v", list, err)
	}
}

func exportIDs(exp *fakeExporter) []uint32 {
	var ids []uint32
	for _, e := range exp.Exports() {
		ids = append(ids, e.ID)
	}
	return ids
}

// A volume whose dataset is not mounted is never exported by a create
// either: the repeated create mounts it first, or fails Unavailable.
func TestCreateNeverExportsUnmounted(t *testing.T) {
	s, pool, exp, _ := newFakeServer(t)
	ctx := context.Background()
	if _, err := s.CreateVolume(ctx, createReq("v", 8<<20, nil, nil)); err != nil {
		t.Fatal(err)
	}
	if err := exp.Unexport(ctx, pool.vols["v"].ExportID); err != nil {
		t.Fatal(err)
	}
	pool.unmount("v", errors.New("no space to create the mountpoint"))
	_, err := s.CreateVolume(ctx, createReq("v", 8<<20, nil, nil))
	if !errors.Is(err, zfs.ErrNotMounted) || code(err) != codes.Unavailable {
		t.Fatalf("repeated create of an unmountable volume: %v", err)
	}
	if len(exp.Exports()) != 0 {
		t.Fatalf("exported while unmounted: %v", exp.Exports())
	}
}
