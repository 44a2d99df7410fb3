package driver

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	mount "k8s.io/mount-utils"

	"github.com/dots-csi/dots/internal/mountfake"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/mounter"
)

// Replicated volumes: the volume context lists every server that may hold
// the volume (api.ContextServers), and the node stages from the first that
// serves it.

// newCandidateNode is a fake node whose NFS mounts go through the fake's
// MountNFS (so a test can fail or hang a server's mount), with a short try
// timeout; dialed records the health check's dials.
func newCandidateNode(t *testing.T, mode string, roots ...string) (*fakeNode, *dialLog) {
	t.Helper()
	f := &fakeNode{Seams: mountfake.New(), kubelet: t.TempDir()}
	m, err := mounter.New(mounter.Config{
		Mode: mode, LocalBindRoots: roots, KubeletDir: f.kubelet,
		StatTimeout: 100 * time.Millisecond, UnmountTimeout: 100 * time.Millisecond, MountTryTimeout: 50 * time.Millisecond,
		Mount: f.Mounter, Stat: f.Stat, Statfs: f.Statfs, ShareGroup: f.ShareGroup, NFSMount: f.MountNFS,
	})
	nodeMust(t, err)
	f.m = m
	s, err := NewNodeServer(NodeOptions{NodeID: "node-1", MountMode: mode, LocalBindRoots: roots, KubeletDir: f.kubelet,
		StatsTimeout: time.Second, UnmountTimeout: time.Second}, m)
	nodeMust(t, err)
	d := &dialLog{down: map[string]bool{}}
	s.dial = d.dial
	f.NodeServer = s
	return f, d
}

// dialLog plays the NFS servers the health check dials.
type dialLog struct {
	mu     sync.Mutex
	down   map[string]bool
	dialed []string
}

func (d *dialLog) dial(_ context.Context, addr string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dialed = append(d.dialed, addr)
	if d.down[addr] {
		return errors.New("connection refused")
	}
	return nil
}

func (d *dialLog) set(addr string, down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down[addr] = down
}

func (d *dialLog) log() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.dialed)
}

func candidatesContext(t *testing.T, cands ...api.Candidate) map[string]string {
	t.Helper()
	b, err := json.Marshal(cands)
	nodeMust(t, err)
	// The old keys name the server the volume was created on: ignored
	// when the list is there.
	return map[string]string{api.ContextServer: "a", api.ContextNFSAddress: "10.96.0.11", api.ContextExport: "/dots/pvc-1",
		api.ContextServers: string(b)}
}

var (
	nodeCandA = api.Candidate{Server: "a", Address: "10.96.0.11", Port: 20490}
	nodeCandB = api.Candidate{Server: "b", Address: "10.96.0.12", Port: 20491}
)

func TestNodeStageCandidatesNFS(t *testing.T) {
	f, dials := newCandidateNode(t, mounter.ModeNFS)
	f.HangMount("10.96.0.11:/dots/pvc-1") // a's server is dead: its mount never answers
	staging := filepath.Join(f.dir(t), "st")
	req := &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW),
		VolumeContext: candidatesContext(t, nodeCandA, nodeCandB)}
	_, err := f.NodeStageVolume(nodeCtx, req)
	nodeMust(t, err)
	if mps := f.MountsAt(staging); len(mps) != 1 || mps[0].Device != "10.96.0.12:/dots/pvc-1" || !nodeHasOpt(mps[0].Opts, "port=20491") {
		t.Fatalf("staging shows %+v, want b's export on b's port", mps)
	}
	var tried []string
	for _, tr := range f.MountTries() {
		tried = append(tried, tr.Source)
	}
	if !slices.Equal(tried, []string{"10.96.0.11:/dots/pvc-1", "10.96.0.12:/dots/pvc-1"}) {
		t.Fatalf("tries %q, want a then b", tried)
	}

	// The health check dials the server mounted (b), not the first listed:
	// a being down says nothing about this mount, b being down does.
	dials.set("10.96.0.11:20490", true)
	h, err := f.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID})
	nodeMust(t, err)
	if e := h.GetVolumeHealth().GetHealthStatuses(); len(e) != 0 {
		t.Fatalf("healthy mount of b with a down: %v", e)
	}
	if got := dials.log(); !slices.Equal(got, []string{"10.96.0.12:20491"}) {
		t.Fatalf("dialed %q, want b's NFS endpoint", got)
	}
	dials.set("10.96.0.12:20491", true)
	h, err = f.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID})
	nodeMust(t, err)
	if e := h.GetVolumeHealth().GetHealthStatuses(); len(e) != 1 || e[0].GetReason() != reasonNodeServerUnreachable || !strings.Contains(e[0].GetMessage(), "10.96.0.12:20491") {
		t.Fatalf("b down: %v", e)
	}

	// Staged again: kept, nothing tried.
	_, err = f.NodeStageVolume(nodeCtx, req)
	nodeMust(t, err)
	if n := len(f.MountTries()); n != 2 {
		t.Fatalf("restage tried %d mounts in all, want the 2 of the first stage", n)
	}
}

func TestNodeStageCandidatesNoneServes(t *testing.T) {
	f, _ := newCandidateNode(t, mounter.ModeNFS)
	f.SetMountErr("10.96.0.11:/dots/pvc-1", errors.New("mount.nfs: Connection refused"))
	f.SetMountErr("10.96.0.12:/dots/pvc-1", errors.New("mount.nfs: mounting 10.96.0.12:/dots/pvc-1 failed, reason given by server: No such file or directory"))
	staging := filepath.Join(f.dir(t), "st")
	_, err := f.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW),
		VolumeContext: candidatesContext(t, nodeCandA, nodeCandB)})
	wantNodeCode(t, err, codes.Unavailable)
	for _, want := range []string{"a (10.96.0.11:20490): mount.nfs: Connection refused", "b (10.96.0.12:20491): mount.nfs: mounting", "No such file or directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestNodeStageCandidatesMalformed(t *testing.T) {
	f, _ := newCandidateNode(t, mounter.ModeNFS)
	staging := filepath.Join(f.dir(t), "st")
	good := candidatesContext(t, nodeCandA, nodeCandB)
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for kk, vv := range good {
			m[kk] = vv
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for name, c := range map[string]struct {
		vc   map[string]string
		want string
	}{
		"not JSON":          {with(api.ContextServers, "a,b"), api.ContextServers},
		"not a list":        {with(api.ContextServers, `{"server":"a"}`), api.ContextServers},
		"empty list":        {with(api.ContextServers, `[]`), "lists no server"},
		"no address":        {with(api.ContextServers, `[{"server":"a","address":"10.96.0.11"},{"server":"b"}]`), "server 1 (b) has no address"},
		"port out of range": {with(api.ContextServers, `[{"server":"a","address":"10.96.0.11","port":70000}]`), "port 70000"},
		"no export":         {with(api.ContextExport, ""), api.ContextExport},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging,
				VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: c.vc})
			wantNodeCode(t, err, codes.InvalidArgument)
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %q", err, c.want)
			}
		})
	}
	if n := len(f.MountTries()); n != 0 {
		t.Fatalf("%d mounts tried for malformed contexts", n)
	}
}

// A volume context without the list (a PV made before replicas) mounts its
// one server as before: no retry=0, and that server's own error.
func TestNodeStageOldContext(t *testing.T) {
	f, dials := newCandidateNode(t, mounter.ModeNFS)
	staging := filepath.Join(f.dir(t), "st")
	req := &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext}
	f.SetMountErr("10.96.0.12:/dots/pvc-1", fmt.Errorf("%w: server gone", mounter.ErrStale))
	_, err := f.NodeStageVolume(nodeCtx, req)
	wantNodeCode(t, err, codes.Unavailable)
	if errors.Is(err, mounter.ErrNoServer) {
		t.Fatalf("one server's failure reported as a list's: %v", err)
	}
	f.SetMountErr("10.96.0.12:/dots/pvc-1", nil)
	_, err = f.NodeStageVolume(nodeCtx, req)
	nodeMust(t, err)
	tries := f.MountTries()
	if len(tries) != 2 || tries[1].Source != "10.96.0.12:/dots/pvc-1" || nodeHasOpt(tries[1].Options, "retry=0") {
		t.Fatalf("tries %+v", tries)
	}
	_, err = f.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID})
	nodeMust(t, err)
	if got := dials.log(); !slices.Equal(got, []string{"10.96.0.12:20490"}) {
		t.Fatalf("dialed %q", got)
	}
}

// Local-bind: a candidate serves the volume when its path is a mounted
// dataset in its server's volumes directory (a replica lives elsewhere).
func TestNodeStageCandidatesLocalBind(t *testing.T) {
	volA, volB := mounter.VolumesDir(t.TempDir()), mounter.VolumesDir(t.TempDir())
	srcB := filepath.Join(volB, "pvc-1")
	nodeMust(t, os.MkdirAll(volA, 0o750))
	nodeMust(t, os.MkdirAll(srcB, 0o750))
	f, _ := newCandidateNode(t, mounter.ModeLocalBind, volA, volB)
	f.Mounter.MountPoints = []mount.MountPoint{{Device: "poolb/dots/volumes/pvc-1", Path: srcB, Type: "fuse.zfs"}}
	a := nodeCandA
	a.LocalPath = filepath.Join(volA, "pvc-1")
	b := nodeCandB
	b.LocalPath = srcB
	staging := filepath.Join(f.dir(t), "st")
	req := &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW),
		VolumeContext: candidatesContext(t, a, b)}
	_, err := f.NodeStageVolume(nodeCtx, req)
	nodeMust(t, err)
	if mps := f.MountsAt(staging); len(mps) != 1 || mps[0].Device != "poolb/dots/volumes/pvc-1" {
		t.Fatalf("staging shows %+v, want b's dataset", mps)
	}

	// Neither serves it: both named, with why.
	b.LocalPath = filepath.Join(volB, "pvc-2")
	a.LocalPath = filepath.Join(volA, "pvc-2")
	req.VolumeContext, req.StagingTargetPath = candidatesContext(t, a, b), filepath.Join(f.dir(t), "st2")
	_, err = f.NodeStageVolume(nodeCtx, req)
	wantNodeCode(t, err, codes.Unavailable)
	if !strings.Contains(err.Error(), "a (10.96.0.11:20490, "+a.LocalPath+")") || !strings.Contains(err.Error(), "b (10.96.0.12:20491, "+b.LocalPath+")") {
		t.Fatalf("error %q does not name both servers' paths", err)
	}
	// A candidate without a local path is malformed in this mode.
	b.LocalPath = ""
	req.VolumeContext = candidatesContext(t, a, b)
	_, err = f.NodeStageVolume(nodeCtx, req)
	wantNodeCode(t, err, codes.InvalidArgument)
}

func TestNodeOptionsMountTryTimeout(t *testing.T) {
	var o NodeOptions
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	o.AddFlags(fs)
	nodeMust(t, fs.Parse([]string{"--node-id=n1"}))
	if o.MountTryTimeout != mounter.DefaultMountTryTimeout || o.MounterConfig().MountTryTimeout != mounter.DefaultMountTryTimeout {
		t.Fatalf("default: %v", o.MountTryTimeout)
	}
	nodeMust(t, fs.Parse([]string{"--mount-try-timeout=7s"}))
	if o.MounterConfig().MountTryTimeout != 7*time.Second {
		t.Fatalf("parsed: %v", o.MountTryTimeout)
	}
	o.MountTryTimeout = -time.Second
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--mount-try-timeout") {
		t.Fatalf("negative: %v", err)
	}
}

// With discovery configured (nfs mode), a volume no listed server serves
// is looked for on the other discovered servers.
func TestNodeStageDiscoveryFallback(t *testing.T) {
	f, _ := newCandidateNode(t, mounter.ModeNFS)
	f.discover = discovery.Static{
		{Name: "a", APIAddress: "a:9000", NFSAddress: "10.96.0.11", NFSPort: 20490},
		{Name: "b", APIAddress: "b:9000", NFSAddress: "10.96.0.12", NFSPort: 20491},
		{Name: "c", APIAddress: "c:9000", NFSAddress: "10.96.0.13"},
		{Name: "d", APIAddress: "d:9000", NFSAddress: "10.96.0.14"},
	}
	for _, src := range []string{"10.96.0.11:/dots/pvc-1", "10.96.0.12:/dots/pvc-1"} {
		f.SetMountErr(src, errors.New("mount.nfs: No such file or directory"))
	}
	f.HangMount("10.96.0.13:/dots/pvc-1") // c is dead: its try is bounded even though it is alone
	staging := filepath.Join(f.dir(t), "st")
	req := &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW),
		VolumeContext: candidatesContext(t, nodeCandA, nodeCandB)}
	_, err := f.NodeStageVolume(nodeCtx, req)
	nodeMust(t, err)
	if mps := f.MountsAt(staging); len(mps) != 1 || mps[0].Device != "10.96.0.14:/dots/pvc-1" {
		t.Fatalf("staging shows %+v, want d's export", mps)
	}
	var tried []string
	for _, tr := range f.MountTries() {
		tried = append(tried, tr.Source)
		if !nodeHasOpt(tr.Options, "retry=0") {
			t.Errorf("try of %s without retry=0: %q", tr.Source, tr.Options)
		}
	}
	if !slices.Equal(tried, []string{"10.96.0.11:/dots/pvc-1", "10.96.0.12:/dots/pvc-1", "10.96.0.13:/dots/pvc-1", "10.96.0.14:/dots/pvc-1"}) {
		t.Fatalf("tries %q: want the listed a, b, then the discovered c, d", tried)
	}

	// An old context (one server) falls back too; the error, when nothing
	// serves, keeps the listed server's code and names every server.
	f2, _ := newCandidateNode(t, mounter.ModeNFS)
	f2.discover = discovery.Static{{Name: "a", APIAddress: "a:9000", NFSAddress: "10.96.0.12", NFSPort: 20490}, {Name: "c", APIAddress: "c:9000", NFSAddress: "10.96.0.13"}}
	f2.SetMountErr("10.96.0.12:/dots/pvc-1", fmt.Errorf("%w: gone", mounter.ErrStale))
	f2.SetMountErr("10.96.0.13:/dots/pvc-1", errors.New("mount.nfs: access denied by server"))
	_, err = f2.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: filepath.Join(f2.dir(t), "st"),
		VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext})
	wantNodeCode(t, err, codes.Unavailable)
	if !strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), "(c): mount.nfs: access denied by server") {
		t.Fatalf("error %q does not name both", err)
	}

	// A request error is not a server's: nothing discovered is tried.
	f3, _ := newCandidateNode(t, mounter.ModeNFS)
	f3.discover = f.discover
	_, err = f3.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: filepath.Join(f3.dir(t), "st"),
		VolumeCapability: nodeMountCap(nodeSNW, "nolock"), VolumeContext: candidatesContext(t, nodeCandA, nodeCandB)})
	wantNodeCode(t, err, codes.InvalidArgument)
	if n := len(f3.MountTries()); n != 0 {
		t.Fatalf("%d tries for a refused option", n)
	}

	// Discovery failing is said, with the listed servers' reasons.
	f4, _ := newCandidateNode(t, mounter.ModeNFS)
	f4.discover = discovery.File(filepath.Join(t.TempDir(), "missing.json"))
	f4.SetMountErr("10.96.0.12:/dots/pvc-1", errors.New("mount.nfs: No such file or directory"))
	_, err = f4.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: filepath.Join(f4.dir(t), "st"),
		VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext})
	if err == nil || !strings.Contains(err.Error(), "listing the other servers failed") || !strings.Contains(err.Error(), "No such file or directory") {
		t.Fatalf("discovery failing: %v", err)
	}
}

func TestNodeOptionsDiscovery(t *testing.T) {
	var o NodeOptions
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	o.AddFlags(fs)
	nodeMust(t, fs.Parse([]string{"--node-id=n1", "--server=name=s0,api=10.0.0.1:9000,nfs=10.0.0.1"}))
	nodeMust(t, o.Validate())
	if len(o.Servers) != 1 || o.Servers[0].Name != "s0" {
		t.Fatalf("servers %+v", o.Servers)
	}
	nodeMust(t, fs.Parse([]string{"--discover-dns=srv=_api._tcp.dots-server.ns.svc.cluster.local,nfs-domain=ns.svc.cluster.local"}))
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "at most one") {
		t.Fatalf("two sources: %v", err)
	}
	o.Servers = nil
	nodeMust(t, o.Validate())
	o.DiscoverDNS = "nfs-domain"
	if err := o.Validate(); err == nil {
		t.Fatal("a malformed --discover-dns passed")
	}
}
