package client

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// Publish admits this endpoint's node (its NodeGetInfo ID) to a volume's
// export, as the external-attacher does before a pod's node mounts it. A
// controller that does not publish (exports admit every client) needs no
// publish: nothing is done.
func (c *Client) Publish(ctx context.Context, id string, readOnly bool) error {
	node, publishes, err := c.publishing(ctx)
	if err != nil || !publishes {
		return err
	}
	_, err = c.controller.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node,
		VolumeCapability: mountCapability()[0], Readonly: readOnly})
	return err
}

// Unpublish removes this endpoint's node from a volume's export.
func (c *Client) Unpublish(ctx context.Context, id string) error {
	node, publishes, err := c.publishing(ctx)
	if err != nil || !publishes {
		return err
	}
	_, err = c.controller.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: node})
	return err
}

// publishing returns the node ID and whether the controller publishes.
func (c *Client) publishing(ctx context.Context) (string, bool, error) {
	caps, err := c.controller.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		return "", false, err
	}
	publishes := false
	for _, cp := range caps.GetCapabilities() {
		publishes = publishes || cp.GetRpc().GetType() == csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME
	}
	if !publishes {
		return "", false, nil
	}
	info, err := c.node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		return "", false, err
	}
	return info.GetNodeId(), true, nil
}
