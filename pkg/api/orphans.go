package api

// AdminPathOrphans is the controller's admin path (GET) listing the
// orphaned pools: JSON []OrphanedPool, empty when the controller does not
// watch Kubernetes.
const AdminPathOrphans = "/servers/orphaned"

// OrphanedPool is a storage server's pool claim (a PVC of the server
// StatefulSet's claim template) whose pod no longer exists because the
// StatefulSet was scaled below its ordinal, while the pool may still hold
// volumes: they answer Unavailable until the server is back. Scale the
// StatefulSet up to bring it back (then `dots server drain` it before
// scaling down again).
type OrphanedPool struct {
	// Server is the server's name (the pod it had: STATEFULSET-ORDINAL).
	Server    string `json:"server"`
	Namespace string `json:"namespace"`
	Claim     string `json:"claim"`
	// Ordinal of the server in its StatefulSet, and the StatefulSet's
	// replicas now (Ordinal >= Replicas).
	StatefulSet string `json:"statefulSet"`
	Ordinal     int    `json:"ordinal"`
	Replicas    int    `json:"replicas"`
	// Volumes the controller's records place on the server; -1 when it
	// could not say.
	Volumes int `json:"volumes"`
}
