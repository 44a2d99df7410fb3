package driver

import (
	"context"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/api"
)

// TestVolumeHealthOfAServerDown: a volume whose server does not answer is
// INACCESSIBLE, naming the server; a volume of a server nobody knows is
// still Unavailable, and a malformed ID NotFound.
func TestVolumeHealthOfAServerDown(t *testing.T) {
	a := newFakeServer(t, "srv-a", 10*gib, "v1")
	c := newTestController(t, a.discovery())
	ctx := context.Background()
	a.srv.Stop() // the server is down; the controller still knows it
	resp, err := c.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: api.FormatID("srv-a", "v1")})
	if err != nil {
		t.Fatal(err)
	}
	h := resp.GetVolumeHealth()
	if h.GetVolumeId() != "srv-a/v1" || len(h.GetHealthStatuses()) != 1 {
		t.Fatalf("health %v", h)
	}
	e := h.GetHealthStatuses()[0]
	if e.GetStatus() != csi.VolumeHealthErrorType_INACCESSIBLE || e.GetReason() != ReasonServerUnreachable || !strings.Contains(e.GetMessage(), "srv-a") {
		t.Errorf("entry %v", e)
	}
	// (srv-x/v1 would be routed by v1's record to srv-a: an ID's server
	// is only a hint where a record says where the volume is.)
	_, err = c.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: "srv-x/v9"})
	if code(err) != codes.Unavailable {
		t.Errorf("volume of an unknown server: %v", err)
	}
	_, err = c.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: "no-slash"})
	if code(err) != codes.NotFound {
		t.Errorf("malformed id: %v", err)
	}
}
