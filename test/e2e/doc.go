// Package e2e walks a user's path through dots on a real Kubernetes control
// plane on loopback: etcd, kube-apiserver, kube-controller-manager and the
// CSI sidecars, built from the Go module proxy by hack/k8s/build-tools.sh,
// with dots' storage servers, controller and node plugin running on this
// machine (real zfs-fuse pools, real ganesha, the libnfs client). There is no
// kubelet: the test registers the Node and its CSINode as the kubelet would,
// and calls the node plugin as the kubelet would call it. Pods bound to that
// node never run, but the attach-detach controller and the external-attacher
// publish their volumes all the same, which is what opens the per-node
// exports to the node's address.
//
// TestFailoverControl runs a control plane of its own with kube-scheduler
// and the node-lifecycle controller, nodes played by simulated kubelets
// (simKubelet: Lease heartbeats, Ready, volumes in use, pods Running) and a
// pool disk behind the real csi-attacher, kills the node of a storage
// server, and measures how the dots controller moves it (README,
// "Failover").
//
// It is its own module so that client-go stays out of the driver's
// dependency graph, and so `go test ./...` at the root does not run it; run
// it with `make e2e` (after `make build`), which needs root.
package e2e
