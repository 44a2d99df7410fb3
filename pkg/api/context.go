package api

// Keys of the volume context. A server returns ContextExport and
// ContextLocalPath; the controller adds the server's name and NFS address;
// the node plugin reads them to mount. They are part of every PV ever
// provisioned: never rename one.
const (
	// ContextServer is the name of the storage server holding the volume.
	ContextServer = "dots.csi.dev/server"
	// ContextNFSAddress is the server's stable NFS address (its Service
	// ClusterIP in Kubernetes).
	ContextNFSAddress = "dots.csi.dev/nfs-address"
	// ContextNFSPort is the NFS port when it is not 2049 (the local stack).
	ContextNFSPort = "dots.csi.dev/nfs-port"
	// ContextExport is the NFSv4 pseudo path of the volume's export, e.g.
	// /dots/pvc-123.
	ContextExport = "dots.csi.dev/export"
	// ContextLocalPath is the dataset's mountpoint on the server's machine,
	// used only by the local-bind mount mode of a single-machine stack.
	ContextLocalPath = "dots.csi.dev/local-path"
	// ContextUsedBytes is what the volume's file system holds (its
	// referenced bytes), when the answer was given. Servers put it in
	// ListVolumes and ControllerGetVolume answers only, never in
	// CreateVolume's: it changes, and a PV must not record it.
	ContextUsedBytes = "dots.csi.dev/used-bytes"
)
