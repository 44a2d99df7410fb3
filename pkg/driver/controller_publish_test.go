package driver

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/discovery"
)

func TestControllerPublishChecks(t *testing.T) {
	down := discovery.Server{Name: "srv-c", APIAddress: "127.0.0.1:1", NFSAddress: "10.0.0.3"}
	c := newTestController(t, down)
	ctx := context.Background()
	cap := mountCaps()[0]
	pub := func(vol, node string) error {
		_, err := c.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol, NodeId: node, VolumeCapability: cap})
		return err
	}
	if got := code(pub("srv-c/v", "n@10.0.0.1")); got != codes.Unimplemented {
		t.Errorf("publish on a controller without --controller-publish: %v, want Unimplemented", got)
	}
	c.opts.Publish = true
	caps, _ := c.ControllerGetCapabilities(ctx, nil)
	found := false
	for _, cp := range caps.GetCapabilities() {
		found = found || cp.GetRpc().GetType() == csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME
	}
	if !found {
		t.Error("PUBLISH_UNPUBLISH_VOLUME not advertised with --controller-publish")
	}
	for _, tc := range []struct {
		vol, node string
		want      codes.Code
	}{
		{"", "n@10.0.0.1", codes.InvalidArgument},
		{"srv-c/v", "", codes.InvalidArgument},
		{"srv-c/v", "n@10.0.0.1\x00", codes.InvalidArgument},
		{"srv-c/v", "some-fake-node-id", codes.NotFound},
		{"not-a-cluster-id", "n@10.0.0.1", codes.NotFound},
		{"unknown-server/v", "n@10.0.0.1", codes.Unavailable}, // it may come back
	} {
		if got := code(pub(tc.vol, tc.node)); got != tc.want {
			t.Errorf("publish %q to %q: %v, want %v", tc.vol, tc.node, got, tc.want)
		}
	}
	// What no server can hold is unpublished already; a server not
	// known now may still have the node in its export.
	if _, err := c.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: "not-a-cluster-id", NodeId: "n@10.0.0.1"}); err != nil {
		t.Errorf("unpublish of a malformed id: %v", err)
	}
	_, err := c.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: "unknown-server/v", NodeId: "n@10.0.0.1"})
	if got := code(err); got != codes.Unavailable {
		t.Errorf("unpublish on an unknown server: %v, want Unavailable", got)
	}
}
