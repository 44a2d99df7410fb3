package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// dotsServer is one `dots server` with its pool and NFS ports.
type dotsServer struct {
	name      string
	pool      string
	api       string
	http      string
	nfsPort   int
	mountPort int
	runDir    string // its --run-dir: ganesha/exports.conf is what its NFS server was told to serve
	proc      *proc
}

// startServers starts n storage servers on zfs-fuse pools backed by sparse
// files, with ganesha serving NFSv3 and v4.0 on loopback so the libnfs
// client can reach them. Each export admits only the nodes its volume is
// published to, as the chart's exports.perNode does.
func startServers(t *testing.T, dotsBin, dir, poolPrefix string, n int) []*dotsServer {
	t.Helper()
	var servers []*dotsServer
	for i := 0; i < n; i++ {
		s := &dotsServer{
			name: fmt.Sprintf("e2e-s%d", i), pool: fmt.Sprintf("%s-%d", poolPrefix, i),
			api: fmt.Sprintf("127.0.0.1:%d", freePort(t)), http: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			nfsPort: freePort(t), mountPort: freePort(t),
		}
		s.runDir = filepath.Join(dir, "run", s.name)
		for _, d := range []string{"pools", "mnt/" + s.name, "run/" + s.name} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		// Registered before the server starts, so it runs after its stop.
		t.Cleanup(func() { destroyPool(t, s.pool) })
		s.proc = startProc(t, dir, "dots-server-"+s.name, dotsBin, append([]string{"server",
			"--name=" + s.name,
			"--endpoint=tcp://" + s.api,
			"--pool=" + s.pool,
			"--vdev=" + filepath.Join(dir, "pools", s.name+".img"),
			"--create-pool", "--pool-file-size=4Gi",
			"--export-pool-on-exit=false",
			"--mount-root=" + filepath.Join(dir, "mnt", s.name),
			"--zfs-cli=zfs-fuse",
			fmt.Sprintf("--nfs-port=%d", s.nfsPort),
			fmt.Sprintf("--nfs-mount-port=%d", s.mountPort),
			"--nfs-bind-address=127.0.0.1",
			"--nfs-protocols=3,4", "--nfs-minor-versions=0,1,2",
			// The outer bound: an export admits only the nodes its volume
			// is published to (ControllerPublishVolume), each inside it.
			"--nfs-clients=127.0.0.0/8", "--export-access=per-node", "--nfs-squash=no_root_squash",
			"--run-dir=" + s.runDir,
			// Nothing to reclaim on a fresh server.
			"--nfs-grace-period=2s",
			"--http-address=" + s.http, "--v=4"}, dotsTLSFlags(t, dir, "server")...)...)
		// One at a time: each ganesha registers NFSv3 with the one rpcbind,
		// and concurrent registrations fail.
		waitFor(t, "dots server "+s.name+" ready", 2*time.Minute, s.proc, func() error {
			return httpOK("http://" + s.http + "/readyz")
		})
		servers = append(servers, s)
	}
	return servers
}

// saKubeconfig writes a kubeconfig of the chart's controller ServiceAccount
// (a token from the TokenRequest API): the controller and its sidecars run
// as it, so the chart's RBAC is what lets them work.
func saKubeconfig(t *testing.T, ctx context.Context, c *cluster, k *kube, ns, sa string) string {
	t.Helper()
	exp := int64(4 * 3600)
	tok, err := k.cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for ServiceAccount %s: %v", sa, err)
	}
	path := filepath.Join(c.dir, "controller-sa.kubeconfig")
	writeKubeconfig(t, path, c.url, filepath.Join(c.dir, "pki", "ca.crt"), &clientcmdapi.AuthInfo{Token: tok.Status.Token})
	return path
}

// startController starts `dots controller` on a unix socket, with the
// servers given as flags (no cluster DNS here). It advertises
// ControllerPublishVolume, which the external-attacher calls for each
// VolumeAttachment (the chart's exports.perNode).
//
// With serverSelector it acts on Kubernetes objects for replicated volumes
// as the chart's controller does (--kubernetes-workloads), looking for
// orphaned pools of that StatefulSet every second (their Events recorded
// while it holds the chart's Lease).
func startController(t *testing.T, dotsBin, dir, kubeconfig string, servers []*dotsServer, serverSelector string) (*proc, string) {
	t.Helper()
	sock := filepath.Join(dir, "controller.sock")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"controller", "--endpoint=unix://" + sock, "--http-address=" + httpAddr,
		"--default-volume-size=1Gi", "--probe-interval=2s", "--v=4", "--placements=kubernetes:" + namespace,
		"--controller-publish", "--admin-socket=" + filepath.Join(dir, "admin.sock")}
	args = append(args, dotsTLSFlags(t, dir, "controller")...)
	if serverSelector != "" {
		args = append(args, "--kubernetes-workloads", "--orphaned-pools-selector="+serverSelector,
			"--orphaned-pools-namespace="+namespace, "--orphaned-pools-interval=1s", "--orphaned-pools-lease=dots-controller-orphans")
	}
	for _, s := range servers {
		args = append(args, fmt.Sprintf("--server=name=%s,api=%s,nfs=127.0.0.1,nfs-port=%d,local-paths=true", s.name, s.api, s.nfsPort))
	}
	p := startProcEnv(t, dir, "dots-controller", []string{"KUBECONFIG=" + kubeconfig}, dotsBin, args...)
	waitFor(t, "dots controller ready", time.Minute, p, func() error {
		if _, err := os.Stat(sock); err != nil {
			return err
		}
		return httpOK("http://" + httpAddr + "/readyz")
	})
	return p, sock
}

// startNode starts `dots node` in local-bind mode: this machine has no
// kernel NFS client, so it binds the dataset mountpoints of the servers
// (the entries of each one's volumes directory), at staging and target
// paths below DIR/kubelet, where kubeletDirs puts them. Its CSI node ID
// names the node's address (nodeID), which the exports of the volumes
// published to it admit.
func startNode(t *testing.T, dotsBin, dir string, servers []*dotsServer) (*proc, string) {
	t.Helper()
	sock := filepath.Join(dir, "node.sock")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"node", "--endpoint=unix://" + sock, "--node-id=" + nodeName, "--node-address=" + nodeAddress, "--mount-mode=local-bind",
		"--kubelet-dir=" + filepath.Join(dir, "kubelet"), "--http-address=" + httpAddr, "--v=4"}
	for _, s := range servers {
		args = append(args, "--local-bind-root="+filepath.Join(dir, "mnt", s.name, "dots", "volumes"))
	}
	p := startProc(t, dir, "dots-node", dotsBin, args...)
	waitFor(t, "dots node ready", time.Minute, p, func() error {
		if _, err := os.Stat(sock); err != nil {
			return err
		}
		return httpOK("http://" + httpAddr + "/healthz")
	})
	return p, sock
}

// sidecars are the CSI sidecars of the chart's controller pod, plus the
// cluster's snapshot-controller.
type sidecars struct {
	provisioner, attacher, snapshotter, resizer, snapshotController *proc
}

// all are the sidecars that run as the controller's ServiceAccount.
func (s *sidecars) all() []*proc {
	return []*proc{s.provisioner, s.attacher, s.snapshotter, s.resizer}
}

// startSidecars runs the sidecars as the chart's controller ServiceAccount
// (saConfig, see saKubeconfig); the snapshot-controller is a cluster
// component and runs as the admin.
func startSidecars(t *testing.T, ctx context.Context, c *cluster, k *kube, ns, saConfig, csiSock string) *sidecars {
	t.Helper()

	common := []string{"--kubeconfig=" + saConfig, "--csi-address=" + csiSock,
		"--leader-election", "--leader-election-namespace=" + ns, "--timeout=60s", "--v=4"}
	s := &sidecars{}
	s.snapshotController = startProc(t, c.dir, "snapshot-controller", filepath.Join(c.bin, "snapshot-controller"),
		"--kubeconfig="+c.kubeconfig, "--leader-election=false", "--v=4",
		// The group snapshot CRDs are installed with the snapshot CRDs.
		"--feature-gates=CSIVolumeGroupSnapshot=true")
	s.provisioner = startProc(t, c.dir, "csi-provisioner", filepath.Join(c.bin, "csi-provisioner"),
		append(common, "--extra-create-metadata", "--retry-interval-max=5s")...)
	// The chart's exports.perNode: VolumeAttachments become
	// ControllerPublishVolume calls.
	s.attacher = startProc(t, c.dir, "csi-attacher", filepath.Join(c.bin, "csi-attacher"),
		append(common, "--retry-interval-max=5s")...)
	s.snapshotter = startProc(t, c.dir, "csi-snapshotter", filepath.Join(c.bin, "csi-snapshotter"),
		append(common, "--retry-interval-max=5s", "--feature-gates=CSIVolumeGroupSnapshot=true")...)
	// As the chart sets it where VolumeAttributesClasses are served: off
	// by default in v1.14.
	s.resizer = startProc(t, c.dir, "csi-resizer", filepath.Join(c.bin, "csi-resizer"),
		append(common, "--retry-interval-max=5s", "--feature-gates=VolumeAttributesClass=true")...)
	// Each sidecar holds its lease once it has connected to the driver and
	// started its controller.
	for _, p := range s.all() {
		waitFor(t, p.name+" leader", 90*time.Second, p, func() error {
			leases, err := k.cs.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, l := range leases.Items {
				if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" && leaseOf(p.name, l.Name) {
					return nil
				}
			}
			return fmt.Errorf("no lease held yet (%d leases)", len(leases.Items))
		})
	}
	return s
}

// leaseOf matches a sidecar to its lease name: the driver name with the
// sidecar's suffix ("dots-csi-dev", "external-attacher-leader-dots-csi-dev",
// "external-snapshotter-leader-dots-csi-dev", "external-resizer-dots-csi-dev").
func leaseOf(sidecar, lease string) bool {
	switch sidecar {
	case "csi-provisioner":
		return lease == "dots-csi-dev"
	case "csi-attacher":
		return strings.Contains(lease, "attacher")
	case "csi-snapshotter":
		return strings.Contains(lease, "snapshotter")
	case "csi-resizer":
		return strings.Contains(lease, "resizer")
	}
	return false
}

// chartValues are the values TestE2E installs the chart with: the
// clients' CIDR (the one required value), and a class without lz4, which
// zfs-fuse (pool version 23) lacks; everything else is the chart's
// defaults.
const chartValues = `
server:
  nfs:
    clients: ["127.0.0.0/8"]
storageClasses:
  - name: dots
    reclaimPolicy: Delete
    allowVolumeExpansion: true
    volumeBindingMode: Immediate
    parameters:
      compression: gzip
volumeAttributesClasses:
  - name: dots-plain
    parameters:
      compression: "off"
      atime: "off"
`

func createNamespace(t *testing.T, ctx context.Context, k *kube, ns string) {
	t.Helper()
	if _, err := k.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The serviceaccount-controller makes the "default" account pods need.
	waitFor(t, "default ServiceAccount", time.Minute, nil, func() error {
		_, err := k.cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}
