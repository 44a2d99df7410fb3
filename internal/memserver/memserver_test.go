package memserver

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/mtls"
)

// serve runs s over mutual TLS on loopback, as the controller reaches a
// real server, and returns a client.
func serve(t *testing.T, s *Server) (csi.ControllerClient, csi.IdentityClient) {
	t.Helper()
	b, err := mtls.EnsureBundle(filepath.Join(t.TempDir(), "tls"))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := mtls.ServerCredentials(b.ServerOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := mtls.ClientCredentials(b.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Serve(lis, sc))
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(cc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return csi.NewControllerClient(conn), csi.NewIdentityClient(conn)
}

func createReq(name string, size int64) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}}
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Errorf("got %v, want %v", err, want)
	}
}

// TestPagingIsComplete: a listing in pages returns every volume once, in
// order, across creates and deletes made between pages, and each page
// reads only its own entries.
func TestPagingIsComplete(t *testing.T) {
	s := New("mem-0", 1<<50)
	s.Fill("pvc", 2500, 1<<20)
	cc, _ := serve(t, s)
	ctx := context.Background()
	var seen []string
	token := ""
	pages := 0
	for {
		r, err := cc.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token, MaxEntries: 1000})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range r.GetEntries() {
			seen = append(seen, e.GetVolume().GetVolumeId())
		}
		if pages == 1 {
			// Behind the cursor: not listed; ahead of it: listed.
			if _, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: seen[0]}); err != nil {
				t.Fatal(err)
			}
			if _, err := cc.CreateVolume(ctx, createReq("zz-late", 1<<20)); err != nil {
				t.Fatal(err)
			}
		}
		if token = r.GetNextToken(); token == "" {
			break
		}
	}
	if pages != 3 || len(seen) != 2501 || !slices.IsSorted(seen) || seen[len(seen)-1] != api.IDFor("zz-late") {
		t.Errorf("%d pages, %d entries, sorted %v, last %s", pages, len(seen), slices.IsSorted(seen), seen[len(seen)-1])
	}
	if st := s.Stats(); st.Listed != 2501 || st.Lists != 3 {
		t.Errorf("stats %+v: want 3 lists of 2501 entries in all", st)
	}
	_, err := cc.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: "offset:7"})
	wantCode(t, err, codes.Aborted)
	if r, err := cc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: 10}); err != nil || len(r.GetEntries()) != 0 || s.Stats().SnapshotLists != 1 {
		t.Errorf("ListSnapshots: %v, %v, %+v", r, err, s.Stats())
	}
}

// TestVolumes: create is idempotent for the same size and refused for
// another; get, delete (twice), and the manifest's counts follow.
func TestVolumes(t *testing.T) {
	s := New("mem-1", 10<<20)
	cc, ic := serve(t, s)
	ctx := context.Background()
	r, err := cc.CreateVolume(ctx, createReq("a", 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	id := r.GetVolume().GetVolumeId()
	if id != api.IDFor("a") || r.GetVolume().GetVolumeContext()[api.ContextExport] != "/dots/"+id {
		t.Errorf("volume %v", r.GetVolume())
	}
	if _, err := cc.CreateVolume(ctx, createReq("a", 4<<20)); err != nil {
		t.Errorf("repeat: %v", err)
	}
	_, err = cc.CreateVolume(ctx, createReq("a", 5<<20))
	wantCode(t, err, codes.AlreadyExists)
	_, err = cc.CreateVolume(ctx, createReq("b", 7<<20))
	wantCode(t, err, codes.ResourceExhausted)
	_, err = cc.CreateVolume(ctx, createReq("Bad Name!", 1<<20))
	wantCode(t, err, codes.InvalidArgument)

	info, err := ic.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p, ok := api.ParsePoolInfo(info.GetManifest())
	if !ok || !p.HasCounts || p.Volumes != 1 || p.Provisioned != 4<<20 || p.Available != 6<<20 || info.GetManifest()[api.ManifestServer] != "mem-1" {
		t.Errorf("manifest %v → %+v", info.GetManifest(), p)
	}
	c, err := cc.GetCapacity(ctx, &csi.GetCapacityRequest{})
	if err != nil || c.GetAvailableCapacity() != 6<<20 {
		t.Errorf("capacity %v, %v", c, err)
	}
	if g, err := cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id}); err != nil || g.GetVolume().GetCapacityBytes() != 4<<20 {
		t.Errorf("get %v, %v", g, err)
	}
	for range 2 {
		if _, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Errorf("delete: %v", err)
		}
	}
	_, err = cc.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	wantCode(t, err, codes.NotFound)
	if s.Volumes() != 0 {
		t.Errorf("%d volumes left", s.Volumes())
	}
}
