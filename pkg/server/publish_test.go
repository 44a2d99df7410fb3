package server

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/nfs"
)

// newPublishServer is a fake server in per-node export mode over the
// client network 10.0.0.0/16.
func newPublishServer(t *testing.T, access ExportAccess) (*Server, *fakePool, *fakeExporter) {
	t.Helper()
	ev := &events{}
	pool, exp := newFakePool(ev), newFakeExporter(ev)
	s, err := New(Options{Name: "unit", DefaultCapacity: 64 << 20, Access: access,
		Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}}, pool, exp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateVolume(context.Background(), createReq("vol-1", 10<<20, nil, nil)); err != nil {
		t.Fatal(err)
	}
	return s, pool, exp
}

func publishReq(vol, node string, mode csi.VolumeCapability_AccessMode_Mode, ro bool) *csi.ControllerPublishVolumeRequest {
	return &csi.ControllerPublishVolumeRequest{VolumeId: vol, NodeId: node, Readonly: ro,
		VolumeCapability: &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}}
}

func exportOfVol(t *testing.T, exp *fakeExporter) nfs.Export {
	t.Helper()
	ex := exp.Exports()
	if len(ex) != 1 {
		t.Fatalf("exports %+v, want one", ex)
	}
	return ex[0]
}

func TestPublishAdmitsOnlyPublishedNodes(t *testing.T) {
	s, pool, exp := newPublishServer(t, AccessPerNode)
	ctx := context.Background()
	rwx := csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	if e := exportOfVol(t, exp); len(e.Clients)+len(e.ReadOnlyClients) != 0 {
		t.Fatalf("a new volume's export admits %v %v, want nobody", e.Clients, e.ReadOnlyClients)
	}
	for range 2 { // the second call is a retry: the same answer, nothing more
		if _, err := s.ControllerPublishVolume(ctx, publishReq("vol-1", "a@10.0.0.2", rwx, false)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ControllerPublishVolume(ctx, publishReq("vol-1", "b@10.0.0.3,10.0.1.3", rwx, true)); err != nil {
		t.Fatal(err)
	}
	e := exportOfVol(t, exp)
	if !slices.Equal(e.Clients, []string{"10.0.0.2"}) || !slices.Equal(e.ReadOnlyClients, []string{"10.0.0.3", "10.0.1.3"}) {
		t.Fatalf("export admits rw %v ro %v", e.Clients, e.ReadOnlyClients)
	}
	if n := len(pool.vols["vol-1"].Published); n != 2 {
		t.Fatalf("%d publications recorded, want 2", n)
	}
	// The same node, now read-write: incompatible with its publication.
	_, err := s.ControllerPublishVolume(ctx, publishReq("vol-1", "b@10.0.0.3,10.0.1.3", rwx, false))
	wantMapped(t, "republish with another readonly", err, codes.AlreadyExists)

	if _, err := s.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: "vol-1", NodeId: "a@10.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	if e := exportOfVol(t, exp); len(e.Clients) != 0 || len(e.ReadOnlyClients) != 2 {
		t.Fatalf("after unpublishing a: rw %v ro %v", e.Clients, e.ReadOnlyClients)
	}
	// No node: every node goes.
	if _, err := s.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: "vol-1"}); err != nil {
		t.Fatal(err)
	}
	if e := exportOfVol(t, exp); len(e.Clients)+len(e.ReadOnlyClients) != 0 {
		t.Fatalf("after unpublishing all: rw %v ro %v", e.Clients, e.ReadOnlyClients)
	}
	// Unpublishing what is not there is success.
	for _, req := range []*csi.ControllerUnpublishVolumeRequest{
		{VolumeId: "vol-1", NodeId: "a@10.0.0.2"}, {VolumeId: "no-such-volume", NodeId: "a@10.0.0.2"},
		{VolumeId: "vol-1", NodeId: "some-fake-node-id"}, {VolumeId: "bad/id", NodeId: "a@10.0.0.2"},
	} {
		if _, err := s.ControllerUnpublishVolume(ctx, req); err != nil {
			t.Errorf("unpublish %v: %v", req, err)
		}
	}
}

func TestPublishRefusals(t *testing.T) {
	s, pool, _ := newPublishServer(t, AccessPerNode)
	ctx := context.Background()
	rwo := csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	rwx := csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	for _, c := range []struct {
		what string
		req  *csi.ControllerPublishVolumeRequest
		code codes.Code
	}{
		{"no volume id", publishReq("", "a@10.0.0.2", rwx, false), codes.InvalidArgument},
		{"no node id", publishReq("vol-1", "", rwx, false), codes.InvalidArgument},
		{"no capability", &csi.ControllerPublishVolumeRequest{VolumeId: "vol-1", NodeId: "a@10.0.0.2"}, codes.InvalidArgument},
		{"unknown volume", publishReq("nope", "a@10.0.0.2", rwx, false), codes.NotFound},
		{"node without address", publishReq("vol-1", "some-fake-node-id", rwx, false), codes.NotFound},
		{"a CIDR as node", publishReq("vol-1", "a@10.0.0.0/16", rwx, false), codes.InvalidArgument},
		{"injection", publishReq("vol-1", "a@10.0.0.2; Access_Type = RW", rwx, false), codes.InvalidArgument},
		{"node outside the client networks", publishReq("vol-1", "a@192.168.1.1", rwx, false), codes.FailedPrecondition},
		{"a second address outside", publishReq("vol-1", "a@10.0.0.2,192.168.1.1", rwx, false), codes.FailedPrecondition},
	} {
		_, err := s.ControllerPublishVolume(ctx, c.req)
		wantMapped(t, c.what, err, c.code)
	}
	if n := len(pool.vols["vol-1"].Published); n != 0 {
		t.Fatalf("refused publishes recorded %d nodes", n)
	}
	// A single-node volume goes to one node at a time.
	if _, err := s.ControllerPublishVolume(ctx, publishReq("vol-1", "a@10.0.0.2", rwo, false)); err != nil {
		t.Fatal(err)
	}
	_, err := s.ControllerPublishVolume(ctx, publishReq("vol-1", "b@10.0.0.3", rwo, false))
	wantMapped(t, "single-node volume to a second node", err, codes.FailedPrecondition)
	if _, err := s.ControllerPublishVolume(ctx, publishReq("vol-1", "a@10.0.0.2", rwo, false)); err != nil {
		t.Errorf("single-node volume republished to its node: %v", err)
	}
}

func TestClientsModeAdmitsTheNetworks(t *testing.T) {
	s, _, exp := newPublishServer(t, AccessClients)
	if e := exportOfVol(t, exp); !slices.Equal(e.Clients, []string{"10.0.0.0/16"}) {
		t.Fatalf("clients mode export admits %v", e.Clients)
	}
	if _, err := s.ControllerPublishVolume(context.Background(),
		publishReq("vol-1", "a@10.0.0.2", csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, false)); err != nil {
		t.Fatal(err)
	}
	if e := exportOfVol(t, exp); !slices.Equal(e.Clients, []string{"10.0.0.0/16"}) {
		t.Fatalf("clients mode export after a publish admits %v", e.Clients)
	}
}

func TestSquashParameters(t *testing.T) {
	s, pool, exp := newPublishServer(t, AccessPerNode)
	ctx := context.Background()
	if _, err := s.CreateVolume(ctx, createReq("sq", 10<<20, map[string]string{"squash": "all", "anonUID": "1000", "anonGID": "1001"}, nil)); err != nil {
		t.Fatal(err)
	}
	v := pool.vols["sq"]
	var e nfs.Export
	for _, x := range exp.Exports() {
		if x.ID == v.ExportID {
			e = x
		}
	}
	if e.Squash != nfs.SquashAll || e.AnonUID != 1000 || e.AnonGID != 1001 {
		t.Fatalf("export squash %q anon %d:%d", e.Squash, e.AnonUID, e.AnonGID)
	}
	// The same name with other squashing is another volume.
	_, err := s.CreateVolume(ctx, createReq("sq", 10<<20, map[string]string{"squash": "root"}, nil))
	wantMapped(t, "create again with other squashing", err, codes.AlreadyExists)
	_, err = s.CreateVolume(ctx, createReq("bad", 10<<20, map[string]string{"mode": "777"}, nil))
	wantMapped(t, "world-writable mode", err, codes.InvalidArgument)
}

// wantMapped checks the code an error gets through the server's table.
func wantMapped(t *testing.T, what string, err error, c codes.Code) {
	t.Helper()
	if got := code(err); got != c {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, c)
	}
}
