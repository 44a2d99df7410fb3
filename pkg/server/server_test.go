package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/health"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
)

// newFakeServer returns a Server over a fake pool and exporter sharing one
// event log.
func newFakeServer(t *testing.T, checks ...health.Check) (*Server, *fakePool, *fakeExporter, *events) {
	t.Helper()
	ev := &events{}
	pool, exp := newFakePool(ev), newFakeExporter(ev)
	s, err := New(Options{Name: "unit", DefaultCapacity: 64 << 20}, pool, exp, checks...)
	if err != nil {
		t.Fatal(err)
	}
	return s, pool, exp, ev
}

// code is the gRPC code a call's error gets on the wire.
func code(err error) codes.Code { return status.Code(ErrorCodes.Status(err)) }

func TestCreateVolumeExports(t *testing.T) {
	s, pool, exp, _ := newFakeServer(t)
	resp, err := s.CreateVolume(context.Background(), createReq("vol-1", 10<<20, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	vol := pool.vols["vol-1"]
	want := nfs.Export{ID: vol.ExportID, Path: vol.Mountpoint, Pseudo: "/dots/vol-1"}
	if got := exp.Exports(); len(got) != 1 || !got[0].Equal(want) {
		t.Fatalf("exports %v, want [%v]", got, want)
	}
	ctx := resp.GetVolume().GetVolumeContext()
	if ctx[api.ContextExport] != "/dots/vol-1" || ctx[api.ContextLocalPath] != vol.Mountpoint {
		t.Errorf("volume context %v", ctx)
	}
	if resp.GetVolume().GetCapacityBytes() != 10<<20 || resp.GetVolume().GetVolumeId() != "vol-1" {
		t.Errorf("volume %v", resp.GetVolume())
	}
}

// TestCreateVolumeHealsFailedExport: a create whose export fails reports
// the error; the sidecar's retry finds the dataset and exports it.
func TestCreateVolumeHealsFailedExport(t *testing.T) {
	s, pool, exp, _ := newFakeServer(t)
	ctx := context.Background()
	exp.exportErr = fmt.Errorf("%w: restarting", nfs.ErrUnavailable)
	_, err := s.CreateVolume(ctx, createReq("vol-1", 10<<20, nil, nil))
	if code(err) != codes.Unavailable {
		t.Fatalf("create with a failing export: %v, want Unavailable", err)
	}
	if len(pool.vols) != 1 || len(exp.Exports()) != 0 {
		t.Fatalf("after the failed export: %d volumes, exports %v", len(pool.vols), exp.Exports())
	}
	exp.exportErr = nil
	resp, err := s.CreateVolume(ctx, createReq("vol-1", 10<<20, nil, nil))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := exp.Exports(); len(got) != 1 || got[0].ID != pool.vols["vol-1"].ExportID {
		t.Errorf("exports after the retry: %v", got)
	}
	if len(pool.vols) != 1 || resp.GetVolume().GetVolumeId() != "vol-1" {
		t.Errorf("retry made %d volumes, returned %v", len(pool.vols), resp.GetVolume())
	}
}

func TestDeleteVolumeUnexportsFirst(t *testing.T) {
	s, pool, exp, ev := newFakeServer(t)
	ctx := context.Background()
	if _, err := s.CreateVolume(ctx, createReq("vol-1", 10<<20, nil, nil)); err != nil {
		t.Fatal(err)
	}
	id := pool.vols["vol-1"].ExportID
	ev.reset()
	if _, err := s.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "vol-1"}); err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("unexport %d", id), "delete vol-1"}
	if got := ev.all(); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if len(pool.vols) != 0 || len(exp.Exports()) != 0 {
		t.Errorf("left: volumes %v, exports %v", pool.vols, exp.Exports())
	}
	// Deleting again is success and touches nothing.
	ev.reset()
	if _, err := s.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "vol-1"}); err != nil {
		t.Fatal(err)
	}
	if got := ev.all(); len(got) != 0 {
		t.Errorf("second delete did %q", got)
	}
}

// TestDeleteVolumeReexportsWhenDeleteFails: a volume the pool could not
// delete still exists and may be in use, so it is served again.
func TestDeleteVolumeReexportsWhenDeleteFails(t *testing.T) {
	s, pool, exp, ev := newFakeServer(t)
	ctx := context.Background()
	if _, err := s.CreateVolume(ctx, createReq("vol-1", 10<<20, nil, nil)); err != nil {
		t.Fatal(err)
	}
	before := exp.Exports()
	pool.deleteErr = fmt.Errorf("zfs destroy: %w", zfs.ErrBusy)
	ev.reset()
	_, err := s.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "vol-1"})
	if !errors.Is(err, zfs.ErrBusy) || code(err) != codes.Unavailable {
		t.Fatalf("delete failing in the pool: %v, want ErrBusy (Unavailable)", err)
	}
	id := pool.vols["vol-1"].ExportID
	want := []string{fmt.Sprintf("unexport %d", id), "delete vol-1", fmt.Sprintf("export %d /dots/vol-1", id)}
	if got := ev.all(); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if got := exp.Exports(); !slices.EqualFunc(got, before, nfs.Export.Equal) {
		t.Errorf("exports after the failed delete %v, want %v", got, before)
	}
}

// TestDeleteVolumeKeepsVolumeWhenUnexportFails: the dataset is not touched
// while the NFS server may still serve it.
func TestDeleteVolumeKeepsVolumeWhenUnexportFails(t *testing.T) {
	s, pool, exp, ev := newFakeServer(t)
	ctx := context.Background()
	if _, err := s.CreateVolume(ctx, createReq("vol-1", 10<<20, nil, nil)); err != nil {
		t.Fatal(err)
	}
	exp.unexportErr = fmt.Errorf("%w: down", nfs.ErrUnavailable)
	ev.reset()
	_, err := s.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "vol-1"})
	if code(err) != codes.Unavailable {
		t.Fatalf("delete with a failing unexport: %v, want Unavailable", err)
	}
	if _, ok := pool.vols["vol-1"]; !ok || slices.ContainsFunc(ev.all(), func(e string) bool { return strings.HasPrefix(e, "delete") }) {
		t.Errorf("volume deleted although the unexport failed: %q", ev.all())
	}
}

func TestMismatch(t *testing.T) {
	const def = 64 << 20
	vol := &zfs.Volume{Name: "v", Capacity: 32 << 20, Properties: map[string]string{"compression": "on", "recordsize": "16384"},
		Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "s1"}}
	spec := func(mut func(*zfs.VolumeSpec)) zfs.VolumeSpec {
		s := zfs.VolumeSpec{Name: "v", Capacity: 32 << 20, Properties: map[string]string{"compression": "on"},
			Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "s1"}}
		if mut != nil {
			mut(&s)
		}
		return s
	}
	rng := func(req, lim int64) *csi.CapacityRange {
		return &csi.CapacityRange{RequiredBytes: req, LimitBytes: lim}
	}
	cases := []struct {
		what  string
		spec  zfs.VolumeSpec
		r     *csi.CapacityRange
		match bool
	}{
		{"same", spec(nil), rng(32<<20, 0), true},
		{"range it fits", spec(nil), rng(20<<20, 40<<20), true},
		{"exact limit", spec(nil), rng(0, 32<<20), true},
		{"required above", spec(nil), rng(33<<20, 0), false},
		{"limit below", spec(nil), rng(0, 16<<20), false},
		{"no range, default differs", spec(func(s *zfs.VolumeSpec) { s.Capacity = def }), nil, false},
		{"zero range, default differs", spec(func(s *zfs.VolumeSpec) { s.Capacity = def }), rng(0, 0), false},
		{"no range, default equal", spec(nil), nil, true},
		{"no source", spec(func(s *zfs.VolumeSpec) { s.Source = zfs.Source{} }), rng(32<<20, 0), false},
		{"other snapshot", spec(func(s *zfs.VolumeSpec) { s.Source.Name = "s2" }), rng(32<<20, 0), false},
		{"volume source of that name", spec(func(s *zfs.VolumeSpec) { s.Source.Kind = zfs.SourceVolume }), rng(32<<20, 0), false},
		{"thick", spec(func(s *zfs.VolumeSpec) { s.Thick = true }), rng(32<<20, 0), false},
		{"other property value", spec(func(s *zfs.VolumeSpec) { s.Properties["compression"] = "off" }), rng(32<<20, 0), false},
		{"property not set on the volume", spec(func(s *zfs.VolumeSpec) { s.Properties["atime"] = "off" }), rng(32<<20, 0), false},
		{"normalized property", spec(func(s *zfs.VolumeSpec) { s.Properties["recordsize"] = "16384" }), rng(32<<20, 0), true},
	}
	for _, c := range cases {
		why := mismatch(vol, c.spec, c.r)
		if (why == "") != c.match {
			t.Errorf("%s: mismatch = %q, want match %t", c.what, why, c.match)
		}
	}
}

// TestCreateVolumeRepeatSameParameters: a repeated CreateVolume with the
// StorageClass parameters of the first one returns the volume, whatever
// spelling the parameters use (pkg/zfs stores them normalized).
func TestCreateVolumeRepeatSameParameters(t *testing.T) {
	for _, params := range []map[string]string{
		{"compression": "on", "atime": "off"},
		{"thick": "true"},
		{"recordsize": "131072"},
		{"recordsize": "16K"},
		{"recordsize": "1M"},
	} {
		s, _, _, _ := newFakeServer(t)
		ctx := context.Background()
		if _, err := s.CreateVolume(ctx, createReq("v", 10<<20, params, nil)); err != nil {
			t.Fatalf("%v: %v", params, err)
		}
		if _, err := s.CreateVolume(ctx, createReq("v", 10<<20, params, nil)); err != nil {
			t.Errorf("repeat with %v: %v", params, err)
		}
	}
}

// TestConcurrentCallsAborted: while one call works on a volume, others on
// the same volume get Aborted at once instead of running in parallel.
func TestConcurrentCallsAborted(t *testing.T) {
	s, pool, _, _ := newFakeServer(t)
	ctx := context.Background()
	pool.entered, pool.hold = make(chan struct{}, 1), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := s.CreateVolume(ctx, createReq("v", 10<<20, nil, nil))
		done <- err
	}()
	<-pool.entered
	pool.entered = nil // the call below must not reach the pool
	_, err := s.CreateVolume(ctx, createReq("v", 10<<20, nil, nil))
	if code(err) != codes.Aborted {
		t.Errorf("second create while the first runs: %v, want Aborted", err)
	}
	_, err = s.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "v"})
	if code(err) != codes.Aborted {
		t.Errorf("delete while the create runs: %v, want Aborted", err)
	}
	close(pool.hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pool.hold = nil
	if _, err := s.CreateVolume(ctx, createReq("v", 10<<20, nil, nil)); err != nil {
		t.Errorf("create after the first finished: %v", err)
	}
}

func TestListVolumesPaging(t *testing.T) {
	s, _, _, _ := newFakeServer(t)
	ctx := context.Background()
	names := []string{"a", "b", "c", "d", "e"}
	for _, n := range slices.Backward(names) {
		if _, err := s.CreateVolume(ctx, createReq(n, 1<<20, nil, nil)); err != nil {
			t.Fatal(err)
		}
	}
	list := func(token string, max int32) ([]string, string, error) {
		resp, err := s.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token, MaxEntries: max})
		var got []string
		for _, e := range resp.GetEntries() {
			got = append(got, e.GetVolume().GetVolumeId())
			if e.GetVolume().GetVolumeContext()[api.ContextExport] != "/dots/"+e.GetVolume().GetVolumeId() {
				t.Errorf("listed volume without its export: %v", e.GetVolume())
			}
		}
		return got, resp.GetNextToken(), err
	}
	checkPaging(t, names, list)
	// A token names the last entry returned, so a listing goes on where it
	// stopped even when that entry is deleted meanwhile.
	page, token, err := list("", 2)
	if err != nil || !slices.Equal(page, []string{"a", "b"}) {
		t.Fatalf("first page %v %v", page, err)
	}
	if _, err := s.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "b"}); err != nil {
		t.Fatal(err)
	}
	if page, _, err := list(token, 2); err != nil || !slices.Equal(page, []string{"c", "d"}) {
		t.Errorf("page after deleting the token's entry: %v %v, want [c d]", page, err)
	}
}

func TestListSnapshotsPaging(t *testing.T) {
	s, _, _, _ := newFakeServer(t)
	ctx := context.Background()
	for _, v := range []string{"v1", "v2"} {
		if _, err := s.CreateVolume(ctx, createReq(v, 1<<20, nil, nil)); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"s1", "s2", "s3", "s4"}
	for i, n := range names {
		src := "v1"
		if i == 3 {
			src = "v2"
		}
		if _, err := s.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: n, SourceVolumeId: src}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(req *csi.ListSnapshotsRequest) ([]string, string, error) {
		resp, err := s.ListSnapshots(ctx, req)
		var got []string
		for _, e := range resp.GetEntries() {
			if !e.GetSnapshot().GetReadyToUse() {
				t.Errorf("snapshot not ready: %v", e.GetSnapshot())
			}
			got = append(got, e.GetSnapshot().GetSnapshotId())
		}
		return got, resp.GetNextToken(), err
	}
	checkPaging(t, names, func(token string, max int32) ([]string, string, error) {
		return list(&csi.ListSnapshotsRequest{StartingToken: token, MaxEntries: max})
	})
	checkPaging(t, []string{"s1", "s2", "s3"}, func(token string, max int32) ([]string, string, error) {
		return list(&csi.ListSnapshotsRequest{SourceVolumeId: "v1", StartingToken: token, MaxEntries: max})
	})
	for _, c := range []struct {
		req  *csi.ListSnapshotsRequest
		want []string
	}{
		{&csi.ListSnapshotsRequest{SnapshotId: "s4"}, []string{"s4"}},
		{&csi.ListSnapshotsRequest{SnapshotId: "s4", SourceVolumeId: "v2"}, []string{"s4"}},
		{&csi.ListSnapshotsRequest{SnapshotId: "s4", SourceVolumeId: "v1"}, nil},
		{&csi.ListSnapshotsRequest{SnapshotId: "missing"}, nil},
		{&csi.ListSnapshotsRequest{SnapshotId: "a/b"}, nil},
		{&csi.ListSnapshotsRequest{SourceVolumeId: "missing"}, nil},
	} {
		if got, _, err := list(c.req); err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ListSnapshots(%v) = %v %v, want %v", c.req, got, err, c.want)
		}
	}
}

// checkPaging pages through a listing with every page size from 1 to
// len(all)+1 and with 0 (everything), and checks bad tokens and sizes.
func checkPaging(t *testing.T, all []string, list func(token string, max int32) ([]string, string, error)) {
	t.Helper()
	for max := int32(0); max <= int32(len(all))+1; max++ {
		var got []string
		token, pages := "", 0
		for {
			page, next, err := list(token, max)
			if err != nil {
				t.Fatalf("max %d, token %q: %v", max, token, err)
			}
			if max > 0 && len(page) > int(max) {
				t.Errorf("max %d: page of %d", max, len(page))
			}
			got, pages = append(got, page...), pages+1
			if next == "" {
				break
			}
			if token = next; pages > len(all)+1 {
				t.Fatalf("max %d: no end to the listing", max)
			}
		}
		if !slices.Equal(got, all) {
			t.Errorf("max %d: listed %v, want %v", max, got, all)
		}
		if want := wantPages(len(all), int(max)); pages != want {
			t.Errorf("max %d: %d pages, want %d", max, pages, want)
		}
	}
	for _, bad := range []string{"bogus", "after:", "0"} {
		if _, _, err := list(bad, 1); code(err) != codes.Aborted {
			t.Errorf("token %q: %v, want Aborted", bad, err)
		}
	}
	if _, _, err := list("", -1); code(err) != codes.InvalidArgument {
		t.Errorf("negative max_entries: %v, want InvalidArgument", err)
	}
}

func wantPages(n, max int) int {
	if max == 0 || n == 0 {
		return 1
	}
	return (n + max - 1) / max
}

func TestProbe(t *testing.T) {
	var poolErr, nfsErr error
	s, _, _, _ := newFakeServer(t, healthCheck(func() error { return poolErr }), healthCheck(func() error { return nfsErr }))
	ctx := context.Background()
	if _, err := s.Probe(ctx, &csi.ProbeRequest{}); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	nfsErr = fmt.Errorf("%w: restarting", nfs.ErrUnavailable)
	_, err := s.Probe(ctx, &csi.ProbeRequest{})
	if code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "restarting") {
		t.Errorf("NFS server down: %v, want FailedPrecondition naming the cause", err)
	}
	nfsErr, poolErr = nil, errors.New("pool is DEGRADED")
	if _, err := s.Probe(ctx, &csi.ProbeRequest{}); code(err) != codes.FailedPrecondition {
		t.Errorf("pool unhealthy: %v, want FailedPrecondition", err)
	}
	poolErr = nil
	if _, err := s.Probe(ctx, &csi.ProbeRequest{}); err != nil {
		t.Errorf("healthy again: %v", err)
	}
}

// TestRestoreExports: a started server exports every mounted volume of the
// pool with the export id the pool recorded, and never one whose dataset is
// not mounted (its mountpoint is the parent's directory).
func TestRestoreExports(t *testing.T) {
	s, pool, exp, _ := newFakeServer(t)
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c", "unmounted"} {
		if _, err := pool.CreateVolume(ctx, zfs.VolumeSpec{Name: n, Capacity: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	pool.unmount("unmounted", errors.New("directory is not empty"))
	exp.exports[999] = nfs.Export{ID: 999, Path: "/stale", Pseudo: "/dots/stale"}
	n, unmounted, err := s.RestoreExports(ctx)
	if err != nil || n != 3 || !slices.Equal(unmounted, []string{"unmounted"}) {
		t.Fatalf("RestoreExports = %d, %v, %v", n, unmounted, err)
	}
	var want []nfs.Export
	for _, name := range []string{"a", "b", "c"} {
		v := pool.vols[name]
		want = append(want, nfs.Export{ID: v.ExportID, Path: v.Mountpoint, Pseudo: "/dots/" + name})
	}
	if got := exp.Exports(); !slices.EqualFunc(got, want, nfs.Export.Equal) {
		t.Errorf("exports %v, want %v", got, want)
	}
}

// TestExpandVolumeRules: expansion raises the size, a smaller request is a
// no-op (volumes never shrink), and a limit below the current size is
// OutOfRange rather than an answer that breaks it.
func TestExpandVolumeRules(t *testing.T) {
	s, _, _, _ := newFakeServer(t)
	ctx := context.Background()
	if _, err := s.CreateVolume(ctx, createReq("v", 20<<20, nil, nil)); err != nil {
		t.Fatal(err)
	}
	expand := func(req, lim int64) (int64, error) {
		resp, err := s.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: "v",
			CapacityRange: &csi.CapacityRange{RequiredBytes: req, LimitBytes: lim}})
		return resp.GetCapacityBytes(), err
	}
	// Exactly the bytes asked for.
	if got, err := expand(30<<20+1, 0); err != nil || got != 30<<20+1 {
		t.Fatalf("expand to 30 MiB + 1: %d, %v; want exactly that", got, err)
	}
	if got, err := expand(10<<20, 0); err != nil || got != 30<<20+1 {
		t.Fatalf("shrink request: %d, %v; want the current size", got, err)
	}
	if _, err := expand(0, 10<<20); code(err) != codes.OutOfRange {
		t.Fatalf("limit below the current size: %v, want OutOfRange", err)
	}
	if _, err := s.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: "nope",
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1}}); code(err) != codes.NotFound {
		t.Fatalf("unknown volume: %v, want NotFound", err)
	}
}
