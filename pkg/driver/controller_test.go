package driver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

const gib = 1 << 30

// code is what a client sees: the interceptor maps every error through
// the controller's table, and these tests call the methods directly.
func code(err error) codes.Code { return status.Code(ControllerCodes.Status(err)) }

func newTestController(t testing.TB, servers ...discovery.Server) *ControllerServer {
	t.Helper()
	return newTestControllerProbing(t, time.Second, servers...)
}

// newTestControllerProbing is newTestController with the given probe
// timeout.
func newTestControllerProbing(t testing.TB, probeTimeout time.Duration, servers ...discovery.Server) *ControllerServer {
	t.Helper()
	reg := registry.New(discovery.Static(servers), testClientCreds(t), registry.Options{ProbeTimeout: probeTimeout}, nil)
	reg.Refresh(context.Background())
	c, err := NewControllerServer(reg, placements.NewMemory(), ControllerOptions{DefaultCapacity: gib, ReadTimeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// As the controller does at start: record what the servers hold.
	c.ImportPlacements(context.Background())
	return c
}

func createReq(name string, size int64, params map[string]string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountCaps(), Parameters: params,
		CapacityRange: &csi.CapacityRange{RequiredBytes: size}}
}

func TestPlacement(t *testing.T) {
	a := newFakeServer(t, "srv-a", 10*gib)
	b := newFakeServer(t, "srv-b", 20*gib)
	down := discovery.Server{Name: "srv-c", APIAddress: "127.0.0.1:1", NFSAddress: "10.0.0.3"}
	c := newTestController(t, a.discovery(), b.discovery(), down)
	cases := []struct {
		name   string
		size   int64
		params map[string]string
		want   string // server, or "" when an error is expected
		code   codes.Code
	}{
		{"most free wins", gib, nil, "srv-b", codes.OK},
		{"pinned", gib, map[string]string{"server": "srv-a"}, "srv-a", codes.OK},
		{"only one fits", 15 * gib, nil, "srv-b", codes.OK},
		{"none fits", 100 * gib, nil, "", codes.ResourceExhausted},
		{"pinned does not fit", 12 * gib, map[string]string{"server": "srv-a"}, "", codes.ResourceExhausted},
		{"pinned unknown", gib, map[string]string{"server": "srv-x"}, "", codes.InvalidArgument},
		{"pinned down", gib, map[string]string{"server": "srv-c"}, "", codes.Unavailable},
		{"bad parameter", gib, map[string]string{"colour": "blue"}, "", codes.InvalidArgument},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.CreateVolume(context.Background(), createReq("vol-"+string(rune('a'+i)), tc.size, tc.params))
			if code(err) != tc.code {
				t.Fatalf("code %v (%v), want %v", code(err), err, tc.code)
			}
			if tc.want == "" {
				return
			}
			v := resp.GetVolume()
			if got := v.GetVolumeContext()[api.ContextServer]; got != tc.want {
				t.Fatalf("placed on %s, want %s", got, tc.want)
			}
			if v.GetVolumeId() != tc.want+"/vol-"+string(rune('a'+i)) {
				t.Fatalf("volume id %q", v.GetVolumeId())
			}
		})
	}
}

func TestNoServerAnswers(t *testing.T) {
	c := newTestController(t, discovery.Server{Name: "srv-c", APIAddress: "127.0.0.1:1", NFSAddress: "10.0.0.3"})
	_, err := c.CreateVolume(context.Background(), createReq("v", gib, nil))
	if code(err) != codes.Unavailable {
		t.Fatalf("code %v, want Unavailable", code(err))
	}
}

// A repeated CreateVolume goes to the server that already holds the name,
// even when another has more room: never two datasets for one volume.
func TestCreateFindsExisting(t *testing.T) {
	a := newFakeServer(t, "srv-a", 5*gib, "pvc-1")
	b := newFakeServer(t, "srv-b", 50*gib)
	c := newTestController(t, a.discovery(), b.discovery())
	resp, err := c.CreateVolume(context.Background(), createReq("pvc-1", gib, nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVolume().GetVolumeId() != "srv-a/pvc-1" || b.creates != 0 {
		t.Fatalf("repeated create went to %q (creates on b: %d)", resp.GetVolume().GetVolumeId(), b.creates)
	}
}

func TestVolumeContext(t *testing.T) {
	a := newFakeServer(t, "srv-a", 5*gib)
	local := a.discovery()
	local.LocalPaths, local.NFSPort = true, 20490
	for _, tc := range []struct {
		srv       discovery.Server
		wantLocal bool
		wantPort  string
	}{{a.discovery(), false, "2049"}, {local, true, "20490"}} {
		c := newTestController(t, tc.srv)
		resp, err := c.CreateVolume(context.Background(), createReq("v", gib, nil))
		if err != nil {
			t.Fatal(err)
		}
		vc := resp.GetVolume().GetVolumeContext()
		if vc[api.ContextNFSAddress] != "10.0.0.a" || vc[api.ContextExport] != "/dots/v" || vc[api.ContextNFSPort] != tc.wantPort {
			t.Fatalf("volume context %v", vc)
		}
		if _, has := vc[api.ContextLocalPath]; has != tc.wantLocal {
			t.Fatalf("local path present=%v, want %v (LocalPaths=%v)", has, tc.wantLocal, tc.srv.LocalPaths)
		}
	}
}

func TestListVolumesPaging(t *testing.T) {
	a := newFakeServer(t, "srv-a", gib, "v1", "v2", "v3")
	b := newFakeServer(t, "srv-b", gib)
	d := newFakeServer(t, "srv-d", gib, "v4", "v5")
	c := newTestController(t, a.discovery(), b.discovery(), d.discovery())
	want := []string{"srv-a/v1", "srv-a/v2", "srv-a/v3", "srv-d/v4", "srv-d/v5"}
	for max := int32(0); max <= 6; max++ {
		var got []string
		token := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("max %d: paging does not end", max)
			}
			resp, err := c.ListVolumes(context.Background(), &csi.ListVolumesRequest{MaxEntries: max, StartingToken: token})
			if err != nil {
				t.Fatalf("max %d token %q: %v", max, token, err)
			}
			if max > 0 && len(resp.GetEntries()) > int(max) {
				t.Fatalf("max %d: page of %d", max, len(resp.GetEntries()))
			}
			for _, e := range resp.GetEntries() {
				got = append(got, e.GetVolume().GetVolumeId())
			}
			if token = resp.GetNextToken(); token == "" {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("max %d: listed %v, want %v", max, got, want)
		}
	}
	for _, bad := range []string{"invalid-token", "srv-x/after:v1", "srv-a/bogus"} {
		if _, err := c.ListVolumes(context.Background(), &csi.ListVolumesRequest{StartingToken: bad}); code(err) != codes.Aborted {
			t.Errorf("token %q: code %v, want Aborted", bad, code(err))
		}
	}
}

// IDs no server can hold are deleted already and found nowhere. IDs of a
// server this controller does not know now are Unavailable (it may come
// back: a delete reported done would leak its data) until the server is
// declared gone; then they are deleted already too.
func TestIDsOfUnknownServers(t *testing.T) {
	c := newTestController(t, newFakeServer(t, "srv-a", gib).discovery())
	ctx := context.Background()
	cannot := func(id string) {
		t.Helper()
		if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Errorf("DeleteVolume(%q) = %v, want success", id, err)
		}
		if _, err := c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id}); code(err) != codes.NotFound {
			t.Errorf("ControllerGetVolume(%q) code %v, want NotFound", id, code(err))
		}
		if _, err := c.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: id}); err != nil {
			t.Errorf("DeleteSnapshot(%q) = %v, want success", id, err)
		}
		resp, err := c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: id})
		if err != nil || len(resp.GetEntries()) != 0 {
			t.Errorf("ListSnapshots(%q) = %v, %v; want empty", id, resp, err)
		}
	}
	for _, id := range []string{"garbage", "srv-a/../x", "Srv-A/x"} {
		cannot(id)
	}
	for _, call := range []func() error{
		func() error {
			_, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "srv-x/v1"})
			return err
		},
		func() error {
			_, err := c.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: "srv-x/s1"})
			return err
		},
		func() error {
			_, err := c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "srv-x/v1"})
			return err
		},
		func() error {
			_, err := c.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: "srv-x/s1"})
			return err
		},
	} {
		if err := call(); code(err) != codes.Unavailable || !strings.Contains(err.Error(), "dots server forget srv-x") {
			t.Errorf("a call on an unknown server: %v, want Unavailable naming the way out", err)
		}
	}
	if err := c.placements.Forget(ctx, "srv-x"); err != nil {
		t.Fatal(err)
	}
	cannot("srv-x/v1")
}

// A create whose first attempt went to a server that is not reachable now
// is not placed elsewhere: it may exist there.
func TestRetryNeverForks(t *testing.T) {
	a := newFakeServer(t, "srv-a", 50*gib)
	down := discovery.Server{Name: "srv-c", APIAddress: "127.0.0.1:1", NFSAddress: "10.0.0.3"}
	c := newTestController(t, a.discovery(), down)
	ctx := context.Background()
	if err := c.placements.Put(ctx, placements.Record{Kind: placements.Volume, ID: "pvc-1", Server: "srv-c"}); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateVolume(ctx, createReq("pvc-1", gib, nil))
	if code(err) != codes.Unavailable || a.creates != 0 {
		t.Fatalf("retry of a create sent to a down server: %v (creates on srv-a: %d)", err, a.creates)
	}
	// A record of a server unknown to this controller: Unavailable too.
	if err := c.placements.Put(ctx, placements.Record{Kind: placements.Volume, ID: "pvc-2", Server: "srv-gone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVolume(ctx, createReq("pvc-2", gib, nil)); code(err) != codes.Unavailable {
		t.Fatalf("retry of a create sent to an unknown server: %v", err)
	}
	// Declared gone: the name is placed again.
	if err := c.placements.Forget(ctx, "srv-gone"); err != nil {
		t.Fatal(err)
	}
	resp, err := c.CreateVolume(ctx, createReq("pvc-2", gib, nil))
	if err != nil || resp.GetVolume().GetVolumeId() != "srv-a/pvc-2" {
		t.Fatalf("after forget: %v %v", resp, err)
	}
	// A create the server refused for good (it created nothing) frees the
	// name for elsewhere; one with an unknown outcome keeps it.
	a.mu.Lock()
	a.failCreates = status.Error(codes.ResourceExhausted, "the pool filled up")
	a.mu.Unlock()
	if _, err := c.CreateVolume(ctx, createReq("refused", gib, nil)); code(err) != codes.ResourceExhausted {
		t.Fatalf("refused create: %v", err)
	}
	if _, ok, _ := c.placements.Get(ctx, placements.Volume, "refused"); ok {
		t.Error("a refused create left its record")
	}
	a.mu.Lock()
	a.failCreates = status.Error(codes.DeadlineExceeded, "slow")
	a.mu.Unlock()
	if _, err := c.CreateVolume(ctx, createReq("unknown", gib, nil)); code(err) != codes.DeadlineExceeded {
		t.Fatalf("timed-out create: %v", err)
	}
	if s, ok, _ := c.placements.Get(ctx, placements.Volume, "unknown"); !ok || s != "srv-a" {
		t.Error("a create of unknown outcome lost its record: its retry could go elsewhere")
	}
}

// TestPlacementSpreadsThinVolumes: equal servers take turns, even within one
// probe interval (the controller counts what it placed).
func TestPlacementSpreadsThinVolumes(t *testing.T) {
	a := newFakeServer(t, "srv-a", 100*gib)
	b := newFakeServer(t, "srv-b", 100*gib)
	c := newTestController(t, a.discovery(), b.discovery())
	counts := map[string]int{}
	for i := range 6 {
		// Thin: the fakes' free space does not move much.
		a.setFree(100*gib - int64(i))
		b.setFree(100 * gib)
		resp, err := c.CreateVolume(context.Background(), createReq(fmt.Sprintf("thin-%d", i), gib/1024, nil))
		if err != nil {
			t.Fatal(err)
		}
		counts[resp.GetVolume().GetVolumeContext()[api.ContextServer]]++
	}
	if counts["srv-a"] != 3 || counts["srv-b"] != 3 {
		t.Fatalf("6 thin volumes on two equal servers: %v, want 3 each", counts)
	}
}
