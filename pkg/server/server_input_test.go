//go:build integration

package server

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestCreateIdempotent: repeated and concurrent requests through the CSI
// API return the same volume or snapshot, or a clear conflict, and never
// make a second dataset.
func TestCreateIdempotent(t *testing.T) {
	s := startTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	first := s.mustCreate(ctx, createReq("same", 32*mib, nil, nil))
	again := s.mustCreate(ctx, createReq("same", 32*mib, nil, nil))
	if !proto.Equal(first, again) {
		t.Errorf("repeated CreateVolume: %v, first %v", again, first)
	}
	// A range the existing size fits is the same request.
	fits := createReq("same", 16*mib, nil, nil)
	fits.CapacityRange.LimitBytes = 64 * mib
	if v := s.mustCreate(ctx, fits); v.GetVolumeId() != first.GetVolumeId() || v.GetCapacityBytes() != 32*mib {
		t.Errorf("CreateVolume with a range 32 MiB fits: %v", v)
	}
	def := s.mustCreate(ctx, createReq("default", 0, nil, nil))
	if def.GetCapacityBytes() != 64*mib {
		t.Errorf("volume without a size: %d bytes, want the default 64 MiB", def.GetCapacityBytes())
	}
	s.mustCreate(ctx, createReq("default", 0, nil, nil))

	conflicts := map[string]*csi.CreateVolumeRequest{
		"bigger":           createReq("same", 48*mib, nil, nil),
		"limit below":      {Name: "same", VolumeCapabilities: mountCaps(), CapacityRange: &csi.CapacityRange{LimitBytes: 16 * mib}},
		"thick":            createReq("same", 32*mib, map[string]string{"thick": "true"}, nil),
		"property":         createReq("same", 32*mib, map[string]string{"compression": "on"}, nil),
		"content source":   createReq("same", 32*mib, nil, fromVolume("default")),
		"default, no size": createReq("same", 0, nil, nil),
	}
	for what, req := range conflicts {
		_, err := s.ctrl.CreateVolume(ctx, req)
		wantCode(t, "same name, other "+what, err, codes.AlreadyExists)
	}

	snap, err := s.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "same"})
	if err != nil {
		t.Fatal(err)
	}
	snap2, err := s.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "same"})
	if err != nil || !proto.Equal(snap.GetSnapshot(), snap2.GetSnapshot()) {
		t.Errorf("repeated CreateSnapshot: %v %v, first %v", snap2.GetSnapshot(), err, snap.GetSnapshot())
	}
	_, err = s.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "default"})
	wantCode(t, "snapshot name taken by another volume's snapshot", err, codes.AlreadyExists)

	// Ten callers at once with one name: one dataset; each caller gets the
	// volume or Aborted (the sidecar retries those).
	results := make([]error, 10)
	ids := make([]string, 10)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			resp, err := s.ctrl.CreateVolume(ctx, createReq("race", 16*mib, nil, nil))
			results[i], ids[i] = err, resp.GetVolume().GetVolumeId()
		})
	}
	wg.Wait()
	ok := 0
	for i, err := range results {
		switch status.Code(err) {
		case codes.OK:
			ok++
			if ids[i] != "race" {
				t.Errorf("concurrent create %d returned volume %q", i, ids[i])
			}
		case codes.Aborted:
		default:
			t.Errorf("concurrent create %d: %v, want success or Aborted", i, err)
		}
	}
	if ok == 0 {
		t.Error("no concurrent create succeeded")
	}
	s.mustCreate(ctx, createReq("race", 16*mib, nil, nil))
	// Ten concurrent snapshots with one name: one snapshot.
	for range 10 {
		wg.Go(func() {
			_, err := s.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-race", SourceVolumeId: "race"})
			if c := status.Code(err); c != codes.OK && c != codes.Aborted {
				t.Errorf("concurrent snapshot: %v, want success or Aborted", err)
			}
		})
	}
	wg.Wait()

	want := []string{"default", "race", "same"}
	if got := s.volumeDatasets(ctx); !slices.Equal(got, want) {
		t.Errorf("datasets under volumes/: %v, want %v", got, want)
	}
	if got := keys(s.listVolumes(ctx)); !slices.Equal(got, want) {
		t.Errorf("ListVolumes: %v, want %v", got, want)
	}
	var snaps []string
	for _, d := range s.datasets(ctx, s.cfg.Pool+"/dots") {
		if _, snap, ok := strings.Cut(d, "@"); ok {
			snaps = append(snaps, snap)
		}
	}
	slices.Sort(snaps)
	if !slices.Equal(snaps, []string{"snap", "snap-race"}) {
		t.Errorf("snapshots in the pool: %v, want [snap snap-race]", snaps)
	}
}

// TestCreateIdempotentWithRecordSize repeats a CreateVolume whose
// recordsize is written the way a StorageClass writes it ("16K"): the
// repeat is the same request and must return the same volume.
func TestCreateIdempotentWithRecordSize(t *testing.T) {
	s := startTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	params := map[string]string{"recordsize": "16K", "compression": "on", "atime": "off"}
	first := s.mustCreate(ctx, createReq("tuned", 32*mib, params, nil))
	again, err := s.ctrl.CreateVolume(ctx, createReq("tuned", 32*mib, params, nil))
	if err != nil {
		t.Fatalf("repeating the same CreateVolume with recordsize=16K: %v", err)
	}
	if again.GetVolume().GetVolumeId() != first.GetVolumeId() {
		t.Errorf("repeat returned %q, first %q", again.GetVolume().GetVolumeId(), first.GetVolumeId())
	}
}

// TestBadInput sends invalid requests through the CSI API: each gets a
// clear error and creates nothing.
func TestBadInput(t *testing.T) {
	s := startTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	withRange := func(name string, req, lim int64) *csi.CreateVolumeRequest {
		r := createReq(name, 0, nil, nil)
		r.CapacityRange = &csi.CapacityRange{RequiredBytes: req, LimitBytes: lim}
		return r
	}
	block := createReq("block", 16*mib, nil, nil)
	block.VolumeCapabilities = blockCaps()
	noCaps := createReq("nocaps", 16*mib, nil, nil)
	noCaps.VolumeCapabilities = nil
	ext4 := createReq("ext4", 16*mib, nil, nil)
	ext4.VolumeCapabilities[0].GetMount().FsType = "ext4"
	cases := []struct {
		what string
		req  *csi.CreateVolumeRequest
		code codes.Code
	}{
		{"slash", createReq("a/b", 16*mib, nil, nil), codes.InvalidArgument},
		{"leading slash", createReq("/etc", 16*mib, nil, nil), codes.InvalidArgument},
		{"at", createReq("a@b", 16*mib, nil, nil), codes.InvalidArgument},
		{"dot dot", createReq("..", 16*mib, nil, nil), codes.InvalidArgument},
		{"dot dot inside", createReq("a..b", 16*mib, nil, nil), codes.InvalidArgument},
		{"space", createReq("a b", 16*mib, nil, nil), codes.InvalidArgument},
		{"semicolon", createReq("a;rm", 16*mib, nil, nil), codes.InvalidArgument},
		{"command substitution", createReq("$(x)", 16*mib, nil, nil), codes.InvalidArgument},
		{"backquotes", createReq("`id`", 16*mib, nil, nil), codes.InvalidArgument},
		{"newline", createReq("a\nb", 16*mib, nil, nil), codes.InvalidArgument},
		{"option", createReq("-o", 16*mib, nil, nil), codes.InvalidArgument},
		{"internal prefix", createReq("_h0123", 16*mib, nil, nil), codes.InvalidArgument},
		{"300 characters", createReq(strings.Repeat("a", 300), 16*mib, nil, nil), codes.InvalidArgument},
		{"129 characters", createReq(strings.Repeat("b", 129), 16*mib, nil, nil), codes.InvalidArgument},
		{"empty name", createReq("", 16*mib, nil, nil), codes.InvalidArgument},
		{"no size at all", withRange("sized-default", 0, 0), codes.OK},
		{"negative", withRange("negative", -1, 0), codes.InvalidArgument},
		{"negative limit", withRange("negative-limit", 0, -1), codes.InvalidArgument},
		{"required above limit", withRange("inverted", 64*mib, 32*mib), codes.OutOfRange},
		{"limit below the granularity", withRange("tiny-limit", 0, 1000), codes.OutOfRange},
		{"larger than the pool", createReq("huge", 100<<30, nil, nil), codes.ResourceExhausted},
		{"largest int64", createReq("max", math.MaxInt64, nil, nil), codes.ResourceExhausted},
		{"thick larger than the pool", createReq("huge-thick", 2<<30, map[string]string{"thick": "true"}, nil), codes.ResourceExhausted},
		{"unknown parameter", createReq("unknown", 16*mib, map[string]string{"compresion": "on"}, nil), codes.InvalidArgument},
		{"compression=bogus", createReq("bogus", 16*mib, map[string]string{"compression": "bogus"}, nil), codes.InvalidArgument},
		{"recordsize=3K", createReq("rs3k", 16*mib, map[string]string{"recordsize": "3K"}, nil), codes.InvalidArgument},
		{"recordsize=2M", createReq("rs2m", 16*mib, map[string]string{"recordsize": "2M"}, nil), codes.InvalidArgument},
		{"atime=maybe", createReq("atime", 16*mib, map[string]string{"atime": "maybe"}, nil), codes.InvalidArgument},
		{"thick=perhaps", createReq("thick", 16*mib, map[string]string{"thick": "perhaps"}, nil), codes.InvalidArgument},
		{"block access", block, codes.InvalidArgument},
		{"no capabilities", noCaps, codes.InvalidArgument},
		{"fsType ext4", ext4, codes.InvalidArgument},
		{"missing source snapshot", createReq("from-nothing", 16*mib, nil, fromSnapshot("nothing")), codes.NotFound},
		{"missing source volume", createReq("clone-of-nothing", 16*mib, nil, fromVolume("nothing")), codes.NotFound},
	}
	created := map[string]bool{}
	for _, c := range cases {
		before := s.volumeDatasets(ctx)
		resp, err := s.ctrl.CreateVolume(ctx, c.req)
		wantCode(t, c.what, err, c.code)
		if err == nil {
			created[resp.GetVolume().GetVolumeId()] = true
			continue
		}
		if after := s.volumeDatasets(ctx); !slices.Equal(after, before) {
			t.Errorf("%s: failed, but the datasets changed from %v to %v", c.what, before, after)
		}
	}
	if v, ok := s.listVolumes(ctx)["sized-default"]; !ok || v.GetCapacityBytes() != 64*mib {
		t.Errorf("volume without a size: %v, want the default 64 MiB", v)
	}

	// The spec's longest name, 128 characters, is valid: the volume gets a
	// hashed id, and a repeat finds it.
	long := strings.Repeat("n", 127) + "1"
	v := s.mustCreate(ctx, createReq(long, 16*mib, nil, nil))
	id := v.GetVolumeId()
	if !strings.HasPrefix(id, "_h") || len(id) > 63 {
		t.Errorf("id of a 128-character name: %q, want a hashed id", id)
	}
	if again := s.mustCreate(ctx, createReq(long, 16*mib, nil, nil)); again.GetVolumeId() != id {
		t.Errorf("repeat of the 128-character name: id %q, first %q", again.GetVolumeId(), id)
	}
	_, err := s.ctrl.CreateVolume(ctx, createReq(long, 32*mib, nil, nil))
	wantCode(t, "128-character name, other size", err, codes.AlreadyExists)
	if _, err := s.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id}); err != nil {
		t.Errorf("ControllerGetVolume of the hashed id: %v", err)
	}
	created[id] = true

	// Other calls with names that cannot exist.
	_, err = s.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "../etc"})
	wantCode(t, "ControllerGetVolume ../etc", err, codes.NotFound)
	_, err = s.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "a/b"})
	wantCode(t, "DeleteVolume a/b (cannot exist: done)", err, codes.OK)
	_, err = s.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{})
	wantCode(t, "DeleteVolume without an id", err, codes.InvalidArgument)
	_, err = s.ctrl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: "nothing", CapacityRange: &csi.CapacityRange{RequiredBytes: 32 * mib}})
	wantCode(t, "expand a missing volume", err, codes.NotFound)
	_, err = s.ctrl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 100 << 30}})
	wantCode(t, "expand beyond the pool", err, codes.ResourceExhausted)
	_, err = s.ctrl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: -1}})
	wantCode(t, "expand to a negative size", err, codes.InvalidArgument)
	for _, c := range []struct {
		what   string
		id     string
		params map[string]string
		code   codes.Code
	}{
		{"modify without an id", "", map[string]string{"compression": "gzip"}, codes.InvalidArgument},
		{"modify a missing volume", "nothing", map[string]string{"compression": "gzip"}, codes.NotFound},
		{"modify a name that cannot exist", "../etc", map[string]string{"compression": "gzip"}, codes.NotFound},
		{"modify an unknown key", id, map[string]string{"compresion": "gzip"}, codes.InvalidArgument},
		{"modify compression=bogus", id, map[string]string{"compression": "bogus"}, codes.InvalidArgument},
		{"modify compression with an option", id, map[string]string{"compression": "-o"}, codes.InvalidArgument},
		{"modify recordsize=3K", id, map[string]string{"recordsize": "3K"}, codes.InvalidArgument},
		{"modify thick=perhaps", id, map[string]string{"thick": "perhaps"}, codes.InvalidArgument},
		{"modify server (placement)", id, map[string]string{"server": "elsewhere"}, codes.InvalidArgument},
		{"modify uid (creation only)", id, map[string]string{"uid": "0"}, codes.InvalidArgument},
		{"modify squash=some", id, map[string]string{"squash": "some"}, codes.InvalidArgument},
		{"modify anonUID beyond 32 bits", id, map[string]string{"anonUID": "4294967296"}, codes.InvalidArgument},
		{"modify thick, which fits", id, map[string]string{"thick": "true"}, codes.OK},
	} {
		_, err = s.ctrl.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: c.id, MutableParameters: c.params})
		wantCode(t, c.what, err, c.code)
	}
	for what, req := range map[string]*csi.CreateSnapshotRequest{
		"snapshot name with a slash":  {Name: "s/1", SourceVolumeId: id},
		"snapshot name with @":        {Name: "s@1", SourceVolumeId: id},
		"snapshot name of 300 chars":  {Name: strings.Repeat("s", 300), SourceVolumeId: id},
		"snapshot without a name":     {SourceVolumeId: id},
		"snapshot without a source":   {Name: "s1"},
		"snapshot of an invalid name": {Name: "s2", SourceVolumeId: "../x"},
		"snapshot of a missing one":   {Name: "s3", SourceVolumeId: "nothing"},
	} {
		_, err := s.ctrl.CreateSnapshot(ctx, req)
		want := codes.InvalidArgument
		if req.GetName() != "" && req.GetSourceVolumeId() != "" && !strings.ContainsAny(req.GetName(), "/@") && len(req.GetName()) < 128 {
			want = codes.NotFound
		}
		wantCode(t, what, err, want)
	}

	// Group snapshots of names and volumes that cannot be: refused, and
	// (checked at the end) no snapshot is left behind.
	group := csi.NewGroupControllerClient(s.conn)
	tooMany := make([]string, api.MaxGroupMembers+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("v%d", i)
	}
	for _, g := range []struct {
		what string
		req  *csi.CreateVolumeGroupSnapshotRequest
		code codes.Code
	}{
		{"group without a name", &csi.CreateVolumeGroupSnapshotRequest{SourceVolumeIds: []string{id}}, codes.InvalidArgument},
		{"group name with a slash", &csi.CreateVolumeGroupSnapshotRequest{Name: "g/1", SourceVolumeIds: []string{id}}, codes.InvalidArgument},
		{"group name with @", &csi.CreateVolumeGroupSnapshotRequest{Name: "g@1", SourceVolumeIds: []string{id}}, codes.InvalidArgument},
		{"group name of 300 chars", &csi.CreateVolumeGroupSnapshotRequest{Name: strings.Repeat("g", 300), SourceVolumeIds: []string{id}}, codes.InvalidArgument},
		{"group without volumes", &csi.CreateVolumeGroupSnapshotRequest{Name: "g2"}, codes.InvalidArgument},
		{"group with an empty volume id", &csi.CreateVolumeGroupSnapshotRequest{Name: "g3", SourceVolumeIds: []string{id, ""}}, codes.InvalidArgument},
		{"group naming a volume twice", &csi.CreateVolumeGroupSnapshotRequest{Name: "g4", SourceVolumeIds: []string{id, id}}, codes.InvalidArgument},
		{"group of too many volumes", &csi.CreateVolumeGroupSnapshotRequest{Name: "g5", SourceVolumeIds: tooMany}, codes.InvalidArgument},
		{"group of an invalid volume id", &csi.CreateVolumeGroupSnapshotRequest{Name: "g6", SourceVolumeIds: []string{id, "../x"}}, codes.NotFound},
		{"group of an option", &csi.CreateVolumeGroupSnapshotRequest{Name: "g7", SourceVolumeIds: []string{"-r"}}, codes.NotFound},
		{"group of a missing volume", &csi.CreateVolumeGroupSnapshotRequest{Name: "g8", SourceVolumeIds: []string{id, "nothing"}}, codes.NotFound},
	} {
		_, err := group.CreateVolumeGroupSnapshot(ctx, g.req)
		wantCode(t, g.what, err, g.code)
	}
	_, err = group.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{})
	wantCode(t, "GetVolumeGroupSnapshot without an id", err, codes.InvalidArgument)
	_, err = group.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: "../x"})
	wantCode(t, "GetVolumeGroupSnapshot ../x", err, codes.NotFound)
	_, err = group.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{})
	wantCode(t, "DeleteVolumeGroupSnapshot without an id", err, codes.InvalidArgument)
	_, err = group.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: "a/b"})
	wantCode(t, "DeleteVolumeGroupSnapshot a/b (cannot exist: done)", err, codes.OK)

	// Node IDs that are not nodes, and parameters of squashing and
	// ownership out of range: refused, and neither the pool's publication
	// records nor the NFS server's exports change.
	exportsBefore := testenv.ExportsText(t, s.cfg.RunDir)
	rwx := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}
	for _, n := range []struct {
		node string
		code codes.Code
	}{
		{"", codes.InvalidArgument},
		{"n@127.0.0.1; Access_Type = RW", codes.InvalidArgument},
		{"n@127.0.0.1\n}", codes.InvalidArgument},
		{"n@127.0.0.1\"", codes.InvalidArgument},
		{strings.Repeat("n", 300) + "@127.0.0.1", codes.InvalidArgument},
		{"$(id)@127.0.0.1", codes.InvalidArgument},
		{"n@127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5", codes.InvalidArgument},
		{"some-fake-node-id", codes.NotFound},
		{"n@*", codes.InvalidArgument},
		{"n@0.0.0.0", codes.NotFound},
		{"n@127.0.0.0/8", codes.InvalidArgument},
		{"n@localhost", codes.NotFound},
		{"n@10.1.2.3", codes.FailedPrecondition}, // outside the client networks
	} {
		_, err := s.ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: n.node, VolumeCapability: rwx})
		wantCode(t, fmt.Sprintf("publish to node %q", n.node), err, n.code)
		if n.node != "" && n.code == codes.InvalidArgument {
			_, err = s.ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: n.node})
			wantCode(t, fmt.Sprintf("unpublish node %q", n.node), err, codes.InvalidArgument)
		}
	}
	_, err = s.ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: "../x", NodeId: "n@127.0.0.1", VolumeCapability: rwx})
	wantCode(t, "publish a volume that cannot exist", err, codes.NotFound)
	for k, v := range map[string]string{"squash": "no_root_squash", "anonUID": "-1", "gid": "99999999999", "mode": "0777", "uid": "0x10"} {
		_, err := s.ctrl.CreateVolume(ctx, createReq("access-"+strings.ToLower(k), 16*mib, map[string]string{k: v}, nil))
		wantCode(t, fmt.Sprintf("parameter %s=%s", k, v), err, codes.InvalidArgument)
	}
	if got, err := s.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id}); err != nil || len(got.GetStatus().GetPublishedNodeIds()) != 0 {
		t.Errorf("published nodes after refused publishes: %v, %v", got.GetStatus().GetPublishedNodeIds(), err)
	}
	if after := testenv.ExportsText(t, s.cfg.RunDir); after != exportsBefore {
		t.Errorf("the exports changed after refused publishes:\n%s\nwas:\n%s", after, exportsBefore)
	}

	want := keys(created)
	if got := keys(s.listVolumes(ctx)); !slices.Equal(got, want) {
		t.Errorf("ListVolumes after the bad requests: %v, want %v", got, want)
	}
	if got := s.volumeDatasets(ctx); !slices.Equal(got, want) {
		t.Errorf("datasets after the bad requests: %v, want %v", got, want)
	}
	for _, d := range s.datasets(ctx, s.cfg.Pool) {
		if strings.Contains(d, "@") {
			t.Errorf("snapshot left by the bad requests: %s", d)
		}
	}
}

// TestGetCapacity: a thick volume takes its size from the pool's free
// space at once, a thin one does not, and deleting gives it back.
func TestGetCapacity(t *testing.T) {
	s := startTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	free := func() int64 {
		t.Helper()
		resp, err := s.ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{VolumeCapabilities: mountCaps()})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetMaximumVolumeSize().GetValue() != resp.GetAvailableCapacity() || resp.GetMinimumVolumeSize().GetValue() != mib {
			t.Errorf("GetCapacity: %v, want maximum = available and minimum 1 MiB", resp)
		}
		return resp.GetAvailableCapacity()
	}
	// Metadata of a new dataset takes a little too; a few MiB is slack.
	const slack = 4 * mib
	start := free()
	if start < 800*mib || start > 1024*mib {
		t.Fatalf("free space of a 1 GiB pool: %d", start)
	}
	thick := s.mustCreate(ctx, createReq("thick", 96*mib, map[string]string{"thick": "true"}, nil))
	afterThick := free()
	t.Logf("free space %d; after a 96 MiB thick volume %d (-%d)", start, afterThick, start-afterThick)
	if d := start - afterThick; d < 96*mib || d > 96*mib+slack {
		t.Errorf("a 96 MiB thick volume took %d bytes of free space, want 96 MiB (+ up to %d)", d, slack)
	}
	s.mustCreate(ctx, createReq("thin", 96*mib, nil, nil))
	if d := afterThick - free(); d < 0 || d > slack {
		t.Errorf("a thin volume took %d bytes of free space, want almost none", d)
	}
	if _, err := s.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: thick.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	// ZFS frees space asynchronously.
	poll.Until(t, 30*time.Second, "space freed after deleting the thick volume", func() error {
		if got := free(); start-got > 2*slack {
			return fmt.Errorf("free space %d, before the volume %d", got, start)
		}
		return nil
	})
	// What cannot be served has no capacity.
	resp, err := s.ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{VolumeCapabilities: blockCaps()})
	if err != nil || resp.GetAvailableCapacity() != 0 {
		t.Errorf("capacity for block volumes: %v %v, want 0", resp, err)
	}
}

// TestCreateSmallerThanSource: the CSI spec names OUT_OF_RANGE for "a
// volume smaller than the source snapshot"; nothing may be created.
func TestCreateSmallerThanSource(t *testing.T) {
	s := startTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src := s.mustCreate(ctx, createReq("src", 64*mib, nil, nil))
	// Written straight into the dataset: this test is about the API, not
	// the data path.
	local := src.GetVolumeContext()[api.ContextLocalPath]
	if err := os.WriteFile(filepath.Join(local, "data"), randomBytes(t, 16*mib), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "src-snap", SourceVolumeId: "src"}); err != nil {
		t.Fatal(err)
	}
	before := s.volumeDatasets(ctx)
	_, err := s.ctrl.CreateVolume(ctx, createReq("small-restore", 8*mib, nil, fromSnapshot("src-snap")))
	wantCode(t, "8 MiB volume from a snapshot holding 16 MiB", err, codes.OutOfRange)
	_, err = s.ctrl.CreateVolume(ctx, createReq("small-clone", 32*mib, nil, fromVolume("src")))
	wantCode(t, "32 MiB clone of a 64 MiB volume", err, codes.OutOfRange)
	if after := s.volumeDatasets(ctx); !slices.Equal(after, before) {
		t.Errorf("datasets changed from %v to %v", before, after)
	}
}
