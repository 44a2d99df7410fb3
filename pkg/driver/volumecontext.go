package driver

import "github.com/dots-csi/dots/pkg/server"

// Keys of the volume context that CreateVolume returns and the node plugin
// reads. They are part of every PV ever provisioned: never rename one.
const (
	// ContextServer is the name of the storage server holding the volume.
	ContextServer = "dots.csi.dev/server"
	// ContextNFSAddress is the server's stable NFS address (its Service ClusterIP in Kubernetes).
	ContextNFSAddress = "dots.csi.dev/nfs-address"
	// ContextNFSPort is the NFS port when it is not 2049 (the local stack).
	ContextNFSPort = "dots.csi.dev/nfs-port"
	// ContextExport is the NFSv4 pseudo path of the volume's export, e.g.
	// /dots/pvc-123, as the storage server reports it.
	ContextExport = server.ContextExport
	// ContextLocalPath is the dataset's mountpoint on the server's machine,
	// used only by the local-bind mount mode of a single-machine stack.
	ContextLocalPath = server.ContextLocalPath
)
