package api

import (
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// PluginCapabilities are what the controller and every server advertise:
// the controller and group controller services, and expansion while mounted (NFS clients see a new
// refquota at once).
func PluginCapabilities() []*csi.PluginCapability {
	return []*csi.PluginCapability{
		{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}}},
		{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_GROUP_CONTROLLER_SERVICE}}},
		{Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{Type: csi.PluginCapability_VolumeExpansion_ONLINE}}},
	}
}

// ControllerCapabilities are the controller RPCs the controller and every
// server implement; with publish, also ControllerPublishVolume (exports
// admit only the nodes a volume is published to) and what comes with it.
func ControllerCapabilities(publish bool) []*csi.ControllerServiceCapability {
	rpcs := []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_GET_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.ControllerServiceCapability_RPC_LIST_VOLUME_HEALTH,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.ControllerServiceCapability_RPC_MODIFY_VOLUME,
	}
	if publish {
		rpcs = append(rpcs, csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
			csi.ControllerServiceCapability_RPC_PUBLISH_READONLY,
			csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES)
	}
	var caps []*csi.ControllerServiceCapability
	for _, c := range rpcs {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}},
		})
	}
	return caps
}

// ValidateCapabilities accepts mount volumes in any known access mode: NFS
// is shared storage. Block volumes are refused. Errors wrap ErrUnsupported.
func ValidateCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return fmt.Errorf("%w: no volume capabilities given", ErrUnsupported)
	}
	for _, c := range caps {
		if c == nil {
			return fmt.Errorf("%w: empty volume capability", ErrUnsupported)
		}
		switch c.GetAccessType().(type) {
		case *csi.VolumeCapability_Mount:
		case *csi.VolumeCapability_Block:
			return fmt.Errorf("%w: block volumes are not supported, dots volumes are NFS filesystems", ErrUnsupported)
		default:
			return fmt.Errorf("%w: access type (mount or block) is missing", ErrUnsupported)
		}
		if c.GetAccessMode() == nil || c.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_UNKNOWN {
			return fmt.Errorf("%w: access mode is missing or unknown", ErrUnsupported)
		}
		if fs := c.GetMount().GetFsType(); fs != "" && fs != "nfs" && fs != "nfs4" {
			return fmt.Errorf("%w: fsType %q (dots volumes are NFS; leave fsType empty)", ErrUnsupported, fs)
		}
	}
	return nil
}
