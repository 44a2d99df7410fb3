//go:build integration

package driver

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	mount "k8s.io/mount-utils"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/mounter"
	"github.com/dots-csi/dots/pkg/nfs"
)

// The data path as a node sees it, on real components: a zfs-fuse dataset
// with a refquota, exported by NFS-Ganesha, staged and published by the
// node service, and read back through the export with the libnfs client.

// nodeFixture is one volume on a real pool, exported over NFS.
type nodeFixture struct {
	dataset    string // pool/pvc-1
	mountpoint string // where zfs-fuse mounted the dataset
	root       string // the pool's mount root, the local-bind root (the dataset is directly below it)
	export     string // the NFSv4 pseudo path
	nfs        *testenv.GaneshaEnv
}

func requireRootForMounts(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("node integration tests need root (CAP_SYS_ADMIN), as the node plugin does")
	}
}

func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newNodeFixture creates a pool with one dataset whose refquota is 64 MiB,
// as a storage server makes a volume, and exports it with ganesha.
func newNodeFixture(t *testing.T) nodeFixture {
	t.Helper()
	requireRootForMounts(t)
	pool := testenv.NewPool(t, "dotsm", 256<<20)
	f := nodeFixture{dataset: pool.Name() + "/pvc-1", export: "/dots/pvc-1"}
	testenv.Zfs(t, "create", "-o", "refquota=64M", f.dataset)
	f.root = strings.TrimSpace(testenv.Zfs(t, "get", "-H", "-o", "value", "mountpoint", pool.Name()))
	f.mountpoint = strings.TrimSpace(testenv.Zfs(t, "get", "-H", "-o", "value", "mountpoint", f.dataset))
	if f.mountpoint != filepath.Join(f.root, "pvc-1") {
		t.Fatalf("dataset mounted at %s, not under the pool's %s", f.mountpoint, f.root)
	}
	f.nfs = testenv.StartGanesha(t, []nfs.Export{{ID: 1, Path: f.mountpoint, Pseudo: f.export, Clients: testenv.LoopbackClients}})
	return f
}

func (f nodeFixture) volumeContext() map[string]string {
	return map[string]string{
		api.ContextServer:     "local",
		api.ContextNFSAddress: "127.0.0.1",
		api.ContextNFSPort:    strconv.Itoa(f.nfs.Client.Port),
		api.ContextExport:     f.export,
		api.ContextLocalPath:  f.mountpoint,
	}
}

// realNodeServer serves paths below kubelet, binding (in local-bind mode)
// the datasets directly below root.
func realNodeServer(t *testing.T, mode, root, kubelet string) *NodeServer {
	t.Helper()
	opts := NodeOptions{NodeID: "node-1", MountMode: mode, LocalBindRoots: roots(root), KubeletDir: kubelet,
		StatsTimeout: 5 * time.Second, UnmountTimeout: 5 * time.Second}
	m, err := mounter.New(opts.MounterConfig())
	nodeMust(t, err)
	s, err := NewNodeServer(opts, m)
	nodeMust(t, err)
	return s
}

// mountedAt lists the kernel's mounts at path.
func mountedAt(t *testing.T, path string) []string {
	t.Helper()
	infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
	nodeMust(t, err)
	var out []string
	for _, mi := range infos {
		if mi.MountPoint == path {
			out = append(out, mi.Source)
		}
	}
	return out
}

// stageAndPublish runs the node calls kubelet makes for a pod.
func stageAndPublish(t *testing.T, s *NodeServer, f nodeFixture, staging, target string) {
	t.Helper()
	vc := nodeMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)
	_, err := s.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: "local/pvc-1", StagingTargetPath: staging, VolumeCapability: vc, VolumeContext: f.volumeContext()})
	nodeMust(t, err)
	_, err = s.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: "local/pvc-1", StagingTargetPath: staging, TargetPath: target, VolumeCapability: vc, VolumeContext: f.volumeContext()})
	nodeMust(t, err)
}

// unpublishAndUnstage undoes stageAndPublish and checks nothing is left.
func unpublishAndUnstage(t *testing.T, s *NodeServer, staging, target string) {
	t.Helper()
	_, err := s.NodeUnpublishVolume(nodeCtx, &csi.NodeUnpublishVolumeRequest{VolumeId: "local/pvc-1", TargetPath: target})
	nodeMust(t, err)
	_, err = s.NodeUnstageVolume(nodeCtx, &csi.NodeUnstageVolumeRequest{VolumeId: "local/pvc-1", StagingTargetPath: staging})
	nodeMust(t, err)
	for _, p := range []string{target, staging} {
		if got := mountedAt(t, p); len(got) != 0 {
			t.Fatalf("%s still mounted: %q", p, got)
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s not removed: %v", p, err)
		}
	}
}

// checkStats expects the dataset's refquota as the volume's size.
func checkStats(t *testing.T, s *NodeServer, target string) {
	t.Helper()
	rsp, err := s.NodeGetVolumeStats(nodeCtx, &csi.NodeGetVolumeStatsRequest{VolumeId: "local/pvc-1", VolumePath: target})
	nodeMust(t, err)
	u := rsp.GetUsage()
	if len(u) != 2 || u[0].GetUnit() != csi.VolumeUsage_BYTES || u[0].GetTotal() != 64<<20 ||
		u[0].GetAvailable() <= 0 || u[0].GetAvailable() > u[0].GetTotal() || u[1].GetUnit() != csi.VolumeUsage_INODES || u[1].GetTotal() <= 0 {
		t.Fatalf("stats of a 64 MiB dataset: %v", u)
	}
	t.Logf("stats: %v", u)
}

func TestNodeLocalBindDataPath(t *testing.T) {
	f := newNodeFixture(t)
	dir := t.TempDir()
	s := realNodeServer(t, mounter.ModeLocalBind, f.root, dir)
	staging, target := filepath.Join(dir, "globalmount"), filepath.Join(dir, "pod1", "mount")
	stageAndPublish(t, s, f, staging, target)
	if got := mountedAt(t, target); len(got) != 1 || got[0] != f.dataset {
		t.Fatalf("target shows %q, want the dataset %s", got, f.dataset)
	}

	// Pod writes; the dataset and the NFS export both show it.
	data := bytes.Repeat([]byte("written through the pod's target path\n"), 1000)
	nodeMust(t, os.WriteFile(filepath.Join(target, "from-pod.txt"), data, 0o644))
	if got, err := os.ReadFile(filepath.Join(f.mountpoint, "from-pod.txt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read from the dataset mountpoint: %d bytes, %v", len(got), err)
	}
	v4 := f.nfs.Client
	v4.Version = 4
	for _, c := range []libnfs.Client{f.nfs.Client, v4} {
		got, err := c.ReadFile(nodeCtx, f.export, "from-pod.txt")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read through NFSv%d: %d bytes, %v", c.Version, len(got), err)
		}
	}

	// An NFS client writes (over NFSv3: see libnfs.Client.WriteFile); the pod sees it.
	nfsData := []byte("written through the NFS export\n")
	nodeMust(t, f.nfs.Client.WriteFile(nodeCtx, f.export, "from-nfs.txt", nfsData))
	if got, err := os.ReadFile(filepath.Join(target, "from-nfs.txt")); err != nil || !bytes.Equal(got, nfsData) {
		t.Fatalf("pod reads %q, %v", got, err)
	}

	checkStats(t, s, target)

	// SINGLE_NODE_SINGLE_WRITER: a second target is refused, from the real mount table.
	_, err := s.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: "local/pvc-1", StagingTargetPath: staging,
		TargetPath: filepath.Join(dir, "pod2", "mount"), VolumeCapability: nodeMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)})
	wantNodeCode(t, err, codes.FailedPrecondition)

	h, err := s.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: "local/pvc-1"})
	nodeMust(t, err)
	if n := len(h.GetVolumeHealth().GetHealthStatuses()); n != 0 {
		t.Fatalf("healthy volume reports %v", h.GetVolumeHealth())
	}

	// The NFS server stops: the bind mount still reads (the dataset is
	// local), so only the server check can tell; it says the volume is
	// inaccessible and names the server, and clears once it is back.
	nodeMust(t, f.nfs.Stop(nodeCtx))
	h, err = s.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: "local/pvc-1"})
	nodeMust(t, err)
	server := "127.0.0.1:" + strconv.Itoa(f.nfs.Client.Port)
	if e := h.GetVolumeHealth().GetHealthStatuses(); len(e) != 1 || e[0].GetStatus() != csi.VolumeHealthErrorType_INACCESSIBLE ||
		e[0].GetReason() != "ServerUnreachable" || !strings.Contains(e[0].GetMessage(), server) {
		t.Fatalf("with the NFS server stopped: %v", h.GetVolumeHealth())
	}
	if _, err := os.ReadFile(filepath.Join(target, "from-pod.txt")); err != nil {
		t.Fatalf("the bind mount without the NFS server: %v", err)
	}
	nodeMust(t, f.nfs.Start(nodeCtx))
	h, err = s.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: "local/pvc-1"})
	nodeMust(t, err)
	if n := len(h.GetVolumeHealth().GetHealthStatuses()); n != 0 {
		t.Fatalf("with the NFS server back: %v", h.GetVolumeHealth())
	}

	unpublishAndUnstage(t, s, staging, target)
	if got := mountedAt(t, f.mountpoint); len(got) != 1 {
		t.Fatalf("the dataset's own mount changed: %q", got)
	}
	if got, err := os.ReadFile(filepath.Join(f.mountpoint, "from-pod.txt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data after unstage: %v", err)
	}
}

// kernelHasNFS4 reports whether this kernel can mount NFSv4.
func kernelHasNFS4(t *testing.T) bool {
	b, err := os.ReadFile("/proc/filesystems")
	nodeMust(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "nfs4" {
			return true
		}
	}
	return false
}

func TestNodeNFSModeDataPath(t *testing.T) {
	if !kernelHasNFS4(t) {
		t.Skip("nfs mode needs a kernel NFS client: /proc/filesystems does not list nfs4 on this machine")
	}
	f := newNodeFixture(t)
	dir := t.TempDir()
	s := realNodeServer(t, mounter.ModeNFS, "", dir)
	staging, target := filepath.Join(dir, "globalmount"), filepath.Join(dir, "pod1", "mount")
	stageAndPublish(t, s, f, staging, target)
	want := "127.0.0.1:" + f.export
	if got := mountedAt(t, staging); len(got) != 1 || got[0] != want {
		t.Fatalf("staging shows %q, want %s", got, want)
	}
	data := []byte("written through an NFSv4 mount\n")
	nodeMust(t, os.WriteFile(filepath.Join(target, "from-pod.txt"), data, 0o644))
	if got, err := os.ReadFile(filepath.Join(f.mountpoint, "from-pod.txt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read from the dataset: %q, %v", got, err)
	}
	checkStats(t, s, target)
	unpublishAndUnstage(t, s, staging, target)
}
