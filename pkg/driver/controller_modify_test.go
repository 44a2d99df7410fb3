package driver

import (
	"context"
	"maps"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/api"
)

// TestModifyRoutes: ControllerModifyVolume reaches the server holding the
// volume, with the server's own ID; ControllerGetVolume then reports the
// new parameters; a request the controller can refuse alone (no id, an
// unknown or immutable key) never reaches a server.
func TestModifyRoutes(t *testing.T) {
	a := newFakeServer(t, "srv-a", 5*gib)
	b := newFakeServer(t, "srv-b", 5*gib, "v")
	c := newTestController(t, a.discovery(), b.discovery())
	ctx := context.Background()
	id := api.FormatID("srv-b", "v")
	a.takeCalls()
	b.takeCalls()

	params := map[string]string{"compression": "gzip", "thick": "true"}
	if _, err := c.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: id, MutableParameters: params}); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	got := b.modified["v"]
	b.mu.Unlock()
	if !maps.Equal(got, params) {
		t.Errorf("srv-b was asked to modify v with %v, want %v", got, params)
	}
	resp, err := c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		t.Fatal(err)
	}
	if vc := resp.GetVolume().GetVolumeContext(); vc[api.ContextParamPrefix+"compression"] != "gzip" || vc[api.ContextParamPrefix+"thick"] != "true" {
		t.Errorf("ControllerGetVolume context %v: want the modified parameters", vc)
	}

	for what, req := range map[string]*csi.ControllerModifyVolumeRequest{
		"no id":       {MutableParameters: params},
		"unknown key": {VolumeId: id, MutableParameters: map[string]string{"colour": "blue"}},
		"server":      {VolumeId: id, MutableParameters: map[string]string{"server": "srv-a"}},
	} {
		_, err := c.ControllerModifyVolume(ctx, req)
		if code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", what, err)
		}
	}
	if calls := b.takeCalls()["ControllerModifyVolume"]; calls != 1 {
		t.Errorf("srv-b answered %d modifies, want 1 (refused requests never leave the controller)", calls)
	}
	if calls := a.takeCalls()["ControllerModifyVolume"]; calls != 0 {
		t.Errorf("srv-a answered %d modifies of a volume it does not hold", calls)
	}
	_, err = c.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: api.FormatID("srv-b", "gone"), MutableParameters: params})
	if code(err) != codes.NotFound {
		t.Errorf("modify of a missing volume: %v, want NotFound", err)
	}
}
