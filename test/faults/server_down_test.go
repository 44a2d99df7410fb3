//go:build integration

package faults

import (
	"context"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/internal/serverenv"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/driver"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// TestServerDown: with one server stopped, calls that need it answer
// Unavailable, the others still work, and the restarted server is picked up
// again with its volumes.
func TestServerDown(t *testing.T) {
	a, b := serverenv.Start(t, "dotsc", "srv-a"), serverenv.Start(t, "dotsc", "srv-b")
	reg := registry.New(discovery.Static{a.Discovery(), b.Discovery()}, testenv.ClientCreds(t), registry.Options{ProbeTimeout: 2 * time.Second}, nil)
	ctx := context.Background()
	reg.Refresh(ctx)
	c, err := driver.NewControllerServer(reg, placements.NewMemory(), driver.ControllerOptions{DefaultCapacity: 64 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	create := func(name, pin string) (*csi.CreateVolumeResponse, error) {
		p := map[string]string{}
		if pin != "" {
			p["server"] = pin
		}
		return c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountCaps(), Parameters: p,
			CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20}})
	}
	va, err := create("vol-a", "srv-a")
	if err != nil {
		t.Fatal(err)
	}
	vb, err := create("vol-b", "srv-b")
	if err != nil {
		t.Fatal(err)
	}
	if got := vb.GetVolume().GetVolumeId(); got != "srv-b/vol-b" {
		t.Fatalf("pinned volume id = %q, want srv-b/vol-b", got)
	}

	b.Stop()
	reg.Refresh(ctx)
	wantCode := func(what string, err error, code codes.Code) {
		t.Helper()
		// As on the wire: through the controller's error table.
		if got := status.Code(driver.ControllerCodes.Status(err)); got != code {
			t.Errorf("%s: code %v (%v), want %v", what, got, err, code)
		}
	}
	_, err = c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: vb.GetVolume().GetVolumeId()})
	wantCode("get a volume of the stopped server", err, codes.Unavailable)
	_, err = create("vol-b2", "srv-b")
	wantCode("create pinned to the stopped server", err, codes.Unavailable)
	_, err = c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vb.GetVolume().GetVolumeId()})
	wantCode("delete on the stopped server", err, codes.Unavailable)
	// A listing leaves the stopped server out instead of failing.
	down, err := c.ListVolumes(ctx, &csi.ListVolumesRequest{})
	wantCode("list volumes with a server down", err, codes.OK)
	if n := len(down.GetEntries()); n != 1 {
		t.Errorf("listed %d volumes with srv-b down, want srv-a's 1", n)
	}

	_, err = c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: va.GetVolume().GetVolumeId()})
	wantCode("get a volume of the running server", err, codes.OK)
	placed, err := create("vol-c", "")
	wantCode("create with one server up", err, codes.OK)
	if err == nil && placed.GetVolume().GetVolumeId() != "srv-a/vol-c" {
		t.Errorf("placed on %q, want the running server srv-a", placed.GetVolume().GetVolumeId())
	}
	capResp, err := c.GetCapacity(ctx, &csi.GetCapacityRequest{})
	wantCode("capacity with one server up", err, codes.OK)
	if capResp.GetAvailableCapacity() <= 0 {
		t.Errorf("capacity with one server up = %d, want > 0", capResp.GetAvailableCapacity())
	}

	b.Start()
	reg.Refresh(ctx)
	if st := mustMember(t, reg, "srv-b").Status(); !st.Healthy {
		t.Fatalf("restarted server not healthy: %+v", st)
	}
	got, err := c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: vb.GetVolume().GetVolumeId()})
	wantCode("get the volume after the restart", err, codes.OK)
	if err == nil && got.GetVolume().GetCapacityBytes() != 32<<20 {
		t.Errorf("capacity after restart = %d, want %d", got.GetVolume().GetCapacityBytes(), 32<<20)
	}
	list, err := c.ListVolumes(ctx, &csi.ListVolumesRequest{})
	wantCode("list after the restart", err, codes.OK)
	if n := len(list.GetEntries()); n != 3 {
		t.Errorf("listed %d volumes after the restart, want 3", n)
	}
}

func mustMember(t *testing.T, reg *registry.Registry, name string) *registry.Member {
	t.Helper()
	m, ok := reg.Get(name)
	if !ok {
		t.Fatalf("no member %s", name)
	}
	return m
}
