//go:build integration

package driver

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/mounter"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
)

// A replicated volume as a node finds it after its primary moved: two
// real servers (a zfs-fuse pool and a ganesha each). Server a, listed
// first (the volume was created there), now holds only a replica of
// pvc-1, outside its volumes directory and not exported, and serves
// another volume; server b holds pvc-1 as its primary and exports it.

type candidateServer struct {
	name    string
	pool    *zfs.Pool
	volumes string // the pool's volumes directory, a local-bind root
	nfs     *testenv.GaneshaEnv
}

func (s candidateServer) candidate(volume string) api.Candidate {
	return api.Candidate{Server: s.name, Address: "127.0.0.1", Port: s.nfs.Client.Port, LocalPath: filepath.Join(s.volumes, volume)}
}

func (s candidateServer) endpoint() string { return "127.0.0.1:" + strconv.Itoa(s.nfs.Client.Port) }

// newCandidateServer makes a pool holding the named volumes (each with a
// file "which" naming the copy), exported by its own ganesha.
func newCandidateServer(t *testing.T, name string, volumes ...string) candidateServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := candidateServer{name: name, pool: testenv.NewPool(t, "dotsrn", 256<<20)}
	var exports []nfs.Export
	for i, v := range volumes {
		vol, err := s.pool.CreateVolume(ctx, zfs.VolumeSpec{Name: v, Capacity: 64 << 20})
		nodeMust(t, err)
		s.volumes = filepath.Dir(vol.Mountpoint)
		nodeMust(t, os.WriteFile(filepath.Join(vol.Mountpoint, "which"), []byte(name+" primary\n"), 0o644))
		exports = append(exports, nfs.Export{ID: uint32(i + 1), Path: vol.Mountpoint, Pseudo: "/dots/" + v, Clients: testenv.LoopbackClients})
	}
	s.nfs = testenv.StartGanesha(t, exports)
	return s
}

func candidateVolumeContext(t *testing.T, cands ...api.Candidate) map[string]string {
	t.Helper()
	b, err := json.Marshal(cands)
	nodeMust(t, err)
	return map[string]string{api.ContextServer: cands[0].Server, api.ContextNFSAddress: cands[0].Address,
		api.ContextNFSPort: strconv.Itoa(cands[0].Port), api.ContextExport: "/dots/pvc-1", api.ContextServers: string(b)}
}

func candidateNodeServer(t *testing.T, mode, kubelet string, roots ...string) *NodeServer {
	t.Helper()
	opts := NodeOptions{NodeID: "node-1", MountMode: mode, LocalBindRoots: roots, KubeletDir: kubelet,
		StatsTimeout: 5 * time.Second, UnmountTimeout: 5 * time.Second, MountTryTimeout: 10 * time.Second}
	m, err := mounter.New(opts.MounterConfig())
	nodeMust(t, err)
	s, err := NewNodeServer(opts, m)
	nodeMust(t, err)
	return s
}

// twoServers makes a (pvc-0 primary, pvc-1 replica) and b (pvc-1 primary)
// and checks the premise through the real NFS servers: only b exports
// pvc-1.
func twoServers(t *testing.T) (a, b candidateServer) {
	t.Helper()
	requireRootForMounts(t)
	a = newCandidateServer(t, "a", "pvc-0")
	replica := a.pool.Name() + "/dots/replicas/pvc-1"
	// Replicas are never mounted by dots; this one is, outside a's
	// volumes directory, so the test shows a mounted copy elsewhere on
	// a's pool is still not a's volume.
	replicaDir := filepath.Join(t.TempDir(), "replica")
	testenv.Zfs(t, "create", "-p", "-o", "mountpoint="+replicaDir, replica)
	nodeMust(t, os.WriteFile(filepath.Join(replicaDir, "which"), []byte("a replica\n"), 0o644))
	b = newCandidateServer(t, "b", "pvc-1")

	if _, err := a.nfs.Client.ReadFile(nodeCtx, "/dots/pvc-1", "which"); err == nil {
		t.Fatal("server a exports pvc-1: the test's premise is wrong")
	}
	if got, err := b.nfs.Client.ReadFile(nodeCtx, "/dots/pvc-1", "which"); err != nil || string(got) != "b primary\n" {
		t.Fatalf("server b's export of pvc-1: %q, %v", got, err)
	}
	return a, b
}

func TestNodeCandidatesLocalBind(t *testing.T) {
	a, b := twoServers(t)
	dir := t.TempDir()
	s := candidateNodeServer(t, mounter.ModeLocalBind, dir, a.volumes, b.volumes)
	staging, target := filepath.Join(dir, "globalmount"), filepath.Join(dir, "pod1", "mount")
	vc := candidateVolumeContext(t, a.candidate("pvc-1"), b.candidate("pvc-1"))
	capab := nodeMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	_, err := s.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: "a/pvc-1", StagingTargetPath: staging, VolumeCapability: capab, VolumeContext: vc})
	nodeMust(t, err)
	_, err = s.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: "a/pvc-1", StagingTargetPath: staging, TargetPath: target, VolumeCapability: capab, VolumeContext: vc})
	nodeMust(t, err)
	if got := mountedAt(t, target); len(got) != 1 || got[0] != b.pool.Name()+"/dots/volumes/pvc-1" {
		t.Fatalf("target shows %q, want b's primary", got)
	}
	if got, err := os.ReadFile(filepath.Join(target, "which")); err != nil || string(got) != "b primary\n" {
		t.Fatalf("the pod reads %q, %v", got, err)
	}
	// A write through the pod lands in b's export.
	nodeMust(t, os.WriteFile(filepath.Join(target, "from-pod"), []byte("moved\n"), 0o644))
	if got, err := b.nfs.Client.ReadFile(nodeCtx, "/dots/pvc-1", "from-pod"); err != nil || string(got) != "moved\n" {
		t.Fatalf("through b's export: %q, %v", got, err)
	}

	// Health follows the server mounted: a's NFS server stopping changes
	// nothing, b's makes the volume inaccessible, naming b.
	nodeMust(t, a.nfs.Stop(nodeCtx))
	h, err := s.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: "a/pvc-1"})
	nodeMust(t, err)
	if e := h.GetVolumeHealth().GetHealthStatuses(); len(e) != 0 {
		t.Fatalf("with a's NFS server stopped: %v", e)
	}
	nodeMust(t, b.nfs.Stop(nodeCtx))
	h, err = s.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: "a/pvc-1"})
	nodeMust(t, err)
	if e := h.GetVolumeHealth().GetHealthStatuses(); len(e) != 1 || e[0].GetReason() != reasonNodeServerUnreachable || !strings.Contains(e[0].GetMessage(), b.endpoint()) {
		t.Fatalf("with b's NFS server stopped: %v", e)
	}
	nodeMust(t, b.nfs.Start(nodeCtx))

	unpublishAndUnstage(t, s, staging, target)

	// A list whose servers hold no primary of the volume: the error names both.
	vc = candidateVolumeContext(t, a.candidate("pvc-9"), b.candidate("pvc-9"))
	_, err = s.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: "a/pvc-9", StagingTargetPath: staging, VolumeCapability: capab, VolumeContext: vc})
	wantNodeCode(t, err, codes.Unavailable)
	for _, p := range []string{filepath.Join(a.volumes, "pvc-9"), filepath.Join(b.volumes, "pvc-9")} {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name %s", err, p)
		}
	}
}

// The nfs mode on a kernel with an NFS client (every real node; not this
// machine): a's server answers but does not export pvc-1, a third address
// refuses connections, b serves it.
func TestNodeCandidatesNFSMode(t *testing.T) {
	if !kernelHasNFS4(t) {
		t.Skip("nfs mode needs a kernel NFS client: /proc/filesystems does not list nfs4 on this machine")
	}
	a, b := twoServers(t)
	dead := api.Candidate{Server: "dead", Address: "127.0.0.1", Port: testenv.FreeTCPPorts(t, 1)[0]}
	dir := t.TempDir()
	s := candidateNodeServer(t, mounter.ModeNFS, dir)
	staging, target := filepath.Join(dir, "globalmount"), filepath.Join(dir, "pod1", "mount")
	vc := candidateVolumeContext(t, dead, a.candidate("pvc-1"), b.candidate("pvc-1"))
	capab := nodeMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	_, err := s.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: "a/pvc-1", StagingTargetPath: staging, VolumeCapability: capab, VolumeContext: vc})
	nodeMust(t, err)
	if got := mountedAt(t, staging); len(got) != 1 || got[0] != "127.0.0.1:/dots/pvc-1" {
		t.Fatalf("staging shows %q", got)
	}
	_, err = s.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: "a/pvc-1", StagingTargetPath: staging, TargetPath: target, VolumeCapability: capab, VolumeContext: vc})
	nodeMust(t, err)
	if got, err := os.ReadFile(filepath.Join(target, "which")); err != nil || string(got) != "b primary\n" {
		t.Fatalf("the pod reads %q, %v", got, err)
	}
	unpublishAndUnstage(t, s, staging, target)
}
