package driver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"

	"github.com/dots-csi/dots/internal/mountfake"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/lockset"
	"github.com/dots-csi/dots/pkg/mounter"
)

// fakeNode is a NodeServer over a fake host whose stat and statfs
// answers the test controls; its kubelet directory is a temporary one.
type fakeNode struct {
	*NodeServer
	*mountfake.Seams
	m       *mounter.Host
	kubelet string
}

// dir returns a new directory below the kubelet directory, for a test's
// staging and target paths.
func (f *fakeNode) dir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp(f.kubelet, "pod")
	nodeMust(t, err)
	return d
}

func newFakeNode(t *testing.T, mode, root string) *fakeNode {
	t.Helper()
	return newFakeNodeTimeout(t, mode, root, 100*time.Millisecond)
}

// newFakeNodeTimeout sets the bound on stat and statfs.
func newFakeNodeTimeout(t *testing.T, mode, root string, statTimeout time.Duration) *fakeNode {
	t.Helper()
	f := &fakeNode{Seams: mountfake.New(), kubelet: t.TempDir()}
	m, err := mounter.New(mounter.Config{
		Mode: mode, LocalBindRoots: roots(root), KubeletDir: f.kubelet,
		StatTimeout: statTimeout, UnmountTimeout: 100 * time.Millisecond,
		Mount: f.Mounter, Stat: f.Stat, Statfs: f.Statfs, ShareGroup: f.ShareGroup,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	f.NodeServer = newNodeServerFor(t, m, mode, root)
	return f
}

func newNodeServerFor(t *testing.T, m mounter.Mounter, mode, root string) *NodeServer {
	t.Helper()
	s, err := NewNodeServer(NodeOptions{NodeID: "node-1", Addresses: []string{"10.0.0.7"}, MountMode: mode, LocalBindRoots: roots(root), KubeletDir: m.KubeletDir(),
		StatsTimeout: time.Second, UnmountTimeout: time.Second}, m)
	if err != nil {
		t.Fatal(err)
	}
	// The volume contexts name made-up servers: never dial them.
	s.dial = func(context.Context, string) error { return nil }
	return s
}

// roots is the one local-bind root, or none.
func roots(root string) []string {
	if root == "" {
		return nil
	}
	return []string{root}
}

func nodeMountCap(mode csi.VolumeCapability_AccessMode_Mode, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

var (
	nodeSNW        = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	nodeNFSContext = map[string]string{api.ContextServer: "a", api.ContextNFSAddress: "10.96.0.12", api.ContextNFSPort: "20490", api.ContextExport: "/dots/pvc-1"}
	nodeVolID      = "a/pvc-1"
	nodeCtx        = context.Background()
	nodeAnyPath    = "/var/lib/kubelet/x"
)

func wantNodeCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	// As on the wire: through the node's error table.
	if got := status.Code(NodeCodes.Status(err)); got != code {
		t.Fatalf("got %v (%v), want %v", got, err, code)
	}
}

func TestNodeOptions(t *testing.T) {
	var o NodeOptions
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--node-id=n1"}); err != nil {
		t.Fatal(err)
	}
	if o.MountMode != mounter.ModeNFS || o.StatsTimeout != mounter.DefaultStatTimeout || o.UnmountTimeout != mounter.DefaultUnmountTimeout ||
		o.KubeletDir != "/var/lib/kubelet" || o.MounterConfig().KubeletDir != "/var/lib/kubelet" {
		t.Fatalf("defaults: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	nodeMust(t, fs.Parse([]string{"--mount-mode=local-bind", "--local-bind-root=/srv/s0/dots/volumes", "--local-bind-root=/srv/s1/dots/volumes",
		"--kubelet-dir=/var/lib/k0s/kubelet", "--stats-timeout=3s", "--unmount-timeout=7s"}))
	if o.MountMode != mounter.ModeLocalBind || !slices.Equal(o.LocalBindRoots, []string{"/srv/s0/dots/volumes", "/srv/s1/dots/volumes"}) ||
		o.KubeletDir != "/var/lib/k0s/kubelet" || o.StatsTimeout != 3*time.Second || o.UnmountTimeout != 7*time.Second {
		t.Fatalf("parsed: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if mc := o.MounterConfig(); !slices.Equal(mc.LocalBindRoots, o.LocalBindRoots) || mc.KubeletDir != o.KubeletDir {
		t.Fatalf("mounter config: %+v", mc)
	}
	good := NodeOptions{NodeID: "n", MountMode: mounter.ModeNFS, KubeletDir: "/var/lib/kubelet", StatsTimeout: time.Second, UnmountTimeout: time.Second}
	bindMode := func(roots ...string) func(*NodeOptions) {
		return func(o *NodeOptions) { o.MountMode, o.LocalBindRoots = mounter.ModeLocalBind, roots }
	}
	bad := map[string]func(*NodeOptions){
		"no node id":              func(o *NodeOptions) { o.NodeID = "" },
		"long node id":            func(o *NodeOptions) { o.NodeID = string(make([]byte, 300)) },
		"bad address":             func(o *NodeOptions) { o.Addresses = []string{"10.0.0.300"} },
		"host name as address":    func(o *NodeOptions) { o.Addresses = []string{"node.example"} },
		"name too long with addr": func(o *NodeOptions) { o.NodeID, o.Addresses = strings.Repeat("n", 250), []string{"10.0.0.1"} },
		"bad name with address":   func(o *NodeOptions) { o.NodeID, o.Addresses = "a;b", []string{"10.0.0.1"} },
		"unknown mode":            func(o *NodeOptions) { o.MountMode = "fuse" },
		"root without bind mode":  func(o *NodeOptions) { o.LocalBindRoots = []string{"/srv"} },
		"bind mode without root":  bindMode(),
		"relative bind root":      bindMode("/srv/dots/volumes", "srv/dots/volumes"),
		"unclean bind root":       bindMode("/srv/dots/volumes/../state"),
		"bind root /":             bindMode("/"),
		"no kubelet dir":          func(o *NodeOptions) { o.KubeletDir = "" },
		"relative kubelet dir":    func(o *NodeOptions) { o.KubeletDir = "var/lib/kubelet" },
		"kubelet dir /":           func(o *NodeOptions) { o.KubeletDir = "/" },
		"unclean kubelet dir":     func(o *NodeOptions) { o.KubeletDir = "/var/lib/kubelet/" },
		"zero stats timeout":      func(o *NodeOptions) { o.StatsTimeout = 0 },
		"zero unmount timeout":    func(o *NodeOptions) { o.UnmountTimeout = 0 },
	}
	for name, mutate := range bad {
		o := good
		mutate(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, o)
		}
	}
}

func TestNewNodeServerChecksMode(t *testing.T) {
	m, err := mounter.New(mounter.Config{Mount: mount.NewFakeMounter(nil)})
	nodeMust(t, err)
	opts := NodeOptions{NodeID: "n", MountMode: mounter.ModeLocalBind, LocalBindRoots: []string{t.TempDir()}, KubeletDir: mounter.DefaultKubeletDir,
		StatsTimeout: time.Second, UnmountTimeout: time.Second}
	if _, err := NewNodeServer(opts, m); err == nil {
		t.Fatal("an nfs mounter was accepted for --mount-mode=local-bind")
	}
	opts.MountMode, opts.LocalBindRoots, opts.KubeletDir = mounter.ModeNFS, nil, "/var/lib/k0s/kubelet"
	if _, err := NewNodeServer(opts, m); err == nil {
		t.Fatal("a mounter confining to /var/lib/kubelet was accepted for --kubelet-dir=/var/lib/k0s/kubelet")
	}
	if _, err := NewNodeServer(opts, nil); err == nil {
		t.Fatal("nil mounter accepted")
	}
}

func TestNodeInfoAndCapabilities(t *testing.T) {
	f := newFakeNode(t, mounter.ModeNFS, "")
	info, err := f.NodeGetInfo(nodeCtx, &csi.NodeGetInfoRequest{})
	if err != nil || info.GetNodeId() != "node-1@10.0.0.7" || info.GetAccessibleTopology() != nil || info.GetMaxVolumesPerNode() != 0 {
		t.Fatalf("NodeGetInfo = %v, %v", info, err)
	}
	caps, err := f.NodeGetCapabilities(nodeCtx, &csi.NodeGetCapabilitiesRequest{})
	nodeMust(t, err)
	got := map[csi.NodeServiceCapability_RPC_Type]bool{}
	for _, c := range caps.GetCapabilities() {
		got[c.GetRpc().GetType()] = true
	}
	for _, want := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME, csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER, csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.NodeServiceCapability_RPC_VOLUME_MOUNT_GROUP,
	} {
		if !got[want] {
			t.Errorf("capability %v missing", want)
		}
	}
	if len(got) != 5 || got[csi.NodeServiceCapability_RPC_EXPAND_VOLUME] {
		t.Errorf("unexpected capabilities: %v", got)
	}
}

func TestNodeStageValidation(t *testing.T) {
	f := newFakeNode(t, mounter.ModeNFS, "")
	staging := filepath.Join(f.dir(t), "st")
	block := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: nodeSNW}}
	ext4 := nodeMountCap(nodeSNW)
	ext4.GetMount().FsType = "ext4"
	without := func(k string) map[string]string {
		c := map[string]string{}
		for key, v := range nodeNFSContext {
			if key != k {
				c[key] = v
			}
		}
		return c
	}
	withPort := func(p string) map[string]string {
		c := without(api.ContextNFSPort)
		c[api.ContextNFSPort] = p
		return c
	}
	cases := map[string]*csi.NodeStageVolumeRequest{
		"no volume id":       {StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext},
		"no staging path":    {VolumeId: nodeVolID, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext},
		"no capability":      {VolumeId: nodeVolID, StagingTargetPath: staging, VolumeContext: nodeNFSContext},
		"block":              {VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: block, VolumeContext: nodeNFSContext},
		"unknown mode":       {VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(csi.VolumeCapability_AccessMode_UNKNOWN), VolumeContext: nodeNFSContext},
		"fsType ext4":        {VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: ext4, VolumeContext: nodeNFSContext},
		"no address":         {VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: without(api.ContextNFSAddress)},
		"no export":          {VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: without(api.ContextExport)},
		"bad port":           {VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: withPort("nfs")},
		"port out of range":  {VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: withPort("0")},
		"NFSv3 mount option": {VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW, "vers=3"), VolumeContext: nodeNFSContext},
		"comma injection":    {VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW, "hard,sec=none"), VolumeContext: nodeNFSContext},
		"relative staging":   {VolumeId: nodeVolID, StagingTargetPath: "st", VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext},
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := f.NodeStageVolume(nodeCtx, req)
			wantNodeCode(t, err, codes.InvalidArgument)
		})
	}
	if n := len(f.Mounter.GetLog()); n != 0 {
		t.Fatalf("invalid requests mounted %d times", n)
	}
}

func TestNodeFlowNFS(t *testing.T) {
	f := newFakeNode(t, mounter.ModeNFS, "")
	dir := f.dir(t)
	staging, target, roTarget := filepath.Join(dir, "globalmount"), filepath.Join(dir, "pod1", "mount"), filepath.Join(dir, "pod2", "mount")

	stage := &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging,
		VolumeCapability: nodeMountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "nconnect=2"), VolumeContext: nodeNFSContext}
	for i := 0; i < 2; i++ {
		_, err := f.NodeStageVolume(nodeCtx, stage)
		nodeMust(t, err)
	}
	mps := f.MountsAt(staging)
	if len(mps) != 1 || mps[0].Device != "10.96.0.12:/dots/pvc-1" || mps[0].Type != "nfs4" ||
		fmt.Sprint(mps[0].Opts) != "[vers=4.1 hard timeo=600 retrans=2 noresvport nosuid nodev nconnect=2 port=20490]" {
		t.Fatalf("staging mounts: %+v", mps)
	}

	publish := &csi.NodePublishVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, TargetPath: target,
		VolumeCapability: nodeMountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER), VolumeContext: nodeNFSContext}
	for i := 0; i < 2; i++ {
		_, err := f.NodePublishVolume(nodeCtx, publish)
		nodeMust(t, err)
	}
	roPublish := &csi.NodePublishVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, TargetPath: roTarget,
		VolumeCapability: nodeMountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER), Readonly: true}
	_, err := f.NodePublishVolume(nodeCtx, roPublish)
	nodeMust(t, err)
	if mps := f.MountsAt(target); len(mps) != 1 || mps[0].Device != "10.96.0.12:/dots/pvc-1" || nodeHasOpt(mps[0].Opts, "ro") {
		t.Fatalf("target: %+v", mps)
	}
	if mps := f.MountsAt(roTarget); len(mps) != 1 || !nodeHasOpt(mps[0].Opts, "ro") {
		t.Fatalf("read-only target: %+v", mps)
	}
	// The same target read-write now conflicts with its read-only mount.
	roPublish.Readonly = false
	_, err = f.NodePublishVolume(nodeCtx, roPublish)
	wantNodeCode(t, err, codes.AlreadyExists)

	stats, err := f.NodeGetVolumeStats(nodeCtx, &csi.NodeGetVolumeStatsRequest{VolumeId: nodeVolID, VolumePath: target})
	nodeMust(t, err)
	want := []string{"unit:BYTES available:50331648 total:67108864 used:16777216", "unit:INODES available:990 total:1000 used:10"}
	for i, u := range stats.GetUsage() {
		if got := fmt.Sprintf("unit:%v available:%d total:%d used:%d", u.GetUnit(), u.GetAvailable(), u.GetTotal(), u.GetUsed()); got != want[i] {
			t.Fatalf("usage[%d] = %s, want %s", i, got, want[i])
		}
	}

	for _, p := range []string{roTarget, target} {
		for i := 0; i < 2; i++ {
			_, err := f.NodeUnpublishVolume(nodeCtx, &csi.NodeUnpublishVolumeRequest{VolumeId: nodeVolID, TargetPath: p})
			nodeMust(t, err)
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) || len(f.MountsAt(p)) != 0 {
			t.Fatalf("%s not cleaned up: %v %+v", p, err, f.MountsAt(p))
		}
	}
	for i := 0; i < 2; i++ {
		_, err := f.NodeUnstageVolume(nodeCtx, &csi.NodeUnstageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging})
		nodeMust(t, err)
	}
	if _, err := os.Stat(staging); !os.IsNotExist(err) || len(f.MountsAt(staging)) != 0 {
		t.Fatalf("staging not cleaned up: %v", err)
	}
}

func TestNodeReaderOnlyAccessMode(t *testing.T) {
	f := newFakeNode(t, mounter.ModeNFS, "")
	dir := f.dir(t)
	staging, target := filepath.Join(dir, "st"), filepath.Join(dir, "t")
	ro := nodeMountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)
	_, err := f.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: ro, VolumeContext: nodeNFSContext})
	nodeMust(t, err)
	_, err = f.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, TargetPath: target, VolumeCapability: ro})
	nodeMust(t, err)
	for _, p := range []string{staging, target} {
		if mps := f.MountsAt(p); len(mps) != 1 || !nodeHasOpt(mps[0].Opts, "ro") {
			t.Fatalf("%s not read-only: %+v", p, mps)
		}
	}
}

func TestNodePublishPreconditions(t *testing.T) {
	f := newFakeNode(t, mounter.ModeNFS, "")
	dir := f.dir(t)
	req := &csi.NodePublishVolumeRequest{VolumeId: nodeVolID, TargetPath: filepath.Join(dir, "t"), VolumeCapability: nodeMountCap(nodeSNW)}
	_, err := f.NodePublishVolume(nodeCtx, req)
	wantNodeCode(t, err, codes.FailedPrecondition) // no staging path
	req.StagingTargetPath = filepath.Join(dir, "never-staged")
	_, err = f.NodePublishVolume(nodeCtx, req)
	wantNodeCode(t, err, codes.FailedPrecondition)

	for name, r := range map[string]*csi.NodePublishVolumeRequest{
		"no volume id":  {TargetPath: nodeAnyPath, VolumeCapability: nodeMountCap(nodeSNW)},
		"no target":     {VolumeId: nodeVolID, VolumeCapability: nodeMountCap(nodeSNW)},
		"no capability": {VolumeId: nodeVolID, TargetPath: nodeAnyPath},
	} {
		_, err := f.NodePublishVolume(nodeCtx, r)
		if status.Code(NodeCodes.Status(err)) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	for name, r := range map[string]*csi.NodeUnpublishVolumeRequest{"no volume id": {TargetPath: nodeAnyPath}, "no target": {VolumeId: nodeVolID}} {
		_, err := f.NodeUnpublishVolume(nodeCtx, r)
		if status.Code(NodeCodes.Status(err)) != codes.InvalidArgument {
			t.Errorf("unpublish %s: %v, want InvalidArgument", name, err)
		}
	}
	for name, r := range map[string]*csi.NodeUnstageVolumeRequest{"no volume id": {StagingTargetPath: nodeAnyPath}, "no staging": {VolumeId: nodeVolID}} {
		_, err := f.NodeUnstageVolume(nodeCtx, r)
		if status.Code(NodeCodes.Status(err)) != codes.InvalidArgument {
			t.Errorf("unstage %s: %v, want InvalidArgument", name, err)
		}
	}
}

func TestSingleNodeSingleWriter(t *testing.T) {
	f := newFakeNode(t, mounter.ModeNFS, "")
	dir := f.dir(t)
	staging := filepath.Join(dir, "st")
	sw := nodeMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)
	_, err := f.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: sw, VolumeContext: nodeNFSContext})
	nodeMust(t, err)
	pub := func(s *NodeServer, target string, vc *csi.VolumeCapability) error {
		_, err := s.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging,
			TargetPath: filepath.Join(dir, target), VolumeCapability: vc})
		return err
	}
	nodeMust(t, pub(f.NodeServer, "t1", sw))
	nodeMust(t, pub(f.NodeServer, "t1", sw)) // the same target again is fine
	wantNodeCode(t, pub(f.NodeServer, "t2", sw), codes.FailedPrecondition)
	// The rule reads the mount table, so a restarted plugin keeps it.
	restarted := newNodeServerFor(t, f.m, mounter.ModeNFS, "")
	wantNodeCode(t, pub(restarted, "t2", sw), codes.FailedPrecondition)
	// Multi-writer volumes may be published many times on one node.
	nodeMust(t, pub(restarted, "t3", nodeMountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER)))
	// Once the first target is gone, a single writer may publish elsewhere.
	for _, p := range []string{"t1", "t3"} {
		_, err := restarted.NodeUnpublishVolume(nodeCtx, &csi.NodeUnpublishVolumeRequest{VolumeId: nodeVolID, TargetPath: filepath.Join(dir, p)})
		nodeMust(t, err)
	}
	nodeMust(t, pub(restarted, "t2", sw))
}

func TestNodeLockContention(t *testing.T) {
	// The stage below must stay inside the lock while the test calls.
	f := newFakeNodeTimeout(t, mounter.ModeNFS, "", time.Minute)
	dir := f.dir(t)
	staging := filepath.Join(dir, "st")
	stage := &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext}
	_, err := f.NodeStageVolume(nodeCtx, stage)
	nodeMust(t, err)

	// A second stage finds the mount and checks it; a hung stat keeps it
	// busy inside the volume's lock.
	release := f.Block(t, staging)
	done := make(chan error, 1)
	go func() { _, err := f.NodeStageVolume(nodeCtx, stage); done <- err }()
	select {
	case <-f.Entered: // the stage holds the lock and waits on the stat
	case err := <-done:
		t.Fatalf("stage returned before checking the mount: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("stage never reached the mount check")
	}
	_, err = f.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging,
		TargetPath: filepath.Join(dir, "t"), VolumeCapability: nodeMountCap(nodeSNW)})
	wantNodeCode(t, err, codes.Aborted)
	_, err = f.NodeUnstageVolume(nodeCtx, &csi.NodeUnstageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging})
	wantNodeCode(t, err, codes.Aborted)
	_, err = f.NodeUnpublishVolume(nodeCtx, &csi.NodeUnpublishVolumeRequest{VolumeId: nodeVolID, TargetPath: filepath.Join(dir, "t")})
	wantNodeCode(t, err, codes.Aborted)
	_, err = f.NodeStageVolume(nodeCtx, stage)
	wantNodeCode(t, err, codes.Aborted)
	// Another volume is not held up.
	other := map[string]string{api.ContextNFSAddress: "10.96.0.12", api.ContextExport: "/dots/pvc-2"}
	_, err = f.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: "a/pvc-2", StagingTargetPath: filepath.Join(dir, "st2"),
		VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: other})
	nodeMust(t, err)

	release()
	if err := <-done; err != nil {
		t.Fatalf("stage held during the hang: %v", err)
	}
	if !f.locks.TryAcquire(nodeVolID) {
		t.Fatal("lock not released")
	}
	f.locks.Release(nodeVolID)
}

func TestNodeLocalBindContext(t *testing.T) {
	volumes := mounter.VolumesDir(t.TempDir())
	source := filepath.Join(volumes, "pvc-1")
	nodeMust(t, os.MkdirAll(source, 0o750))
	f := newFakeNode(t, mounter.ModeLocalBind, volumes)
	f.Mounter.MountPoints = []mount.MountPoint{{Device: "pool/pvc-1", Path: source, Type: "fuse.zfs"}}
	staging := filepath.Join(f.dir(t), "st")
	req := &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext}
	_, err := f.NodeStageVolume(nodeCtx, req)
	wantNodeCode(t, err, codes.InvalidArgument) // no local path in the context

	req.VolumeContext = map[string]string{api.ContextLocalPath: t.TempDir()}
	_, err = f.NodeStageVolume(nodeCtx, req)
	wantNodeCode(t, err, codes.InvalidArgument) // outside the roots

	req.VolumeContext = map[string]string{api.ContextLocalPath: filepath.Join(volumes, "gone")}
	_, err = f.NodeStageVolume(nodeCtx, req)
	wantNodeCode(t, err, codes.NotFound)

	req.VolumeContext = map[string]string{api.ContextLocalPath: source}
	_, err = f.NodeStageVolume(nodeCtx, req)
	nodeMust(t, err)
	if mps := f.MountsAt(staging); len(mps) != 1 || mps[0].Device != "pool/pvc-1" {
		t.Fatalf("staging: %+v", mps)
	}
}

func TestNodeStatus(t *testing.T) {
	cases := []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("x: %w", mounter.ErrInvalidOption), codes.InvalidArgument},
		{fmt.Errorf("x: %w", mounter.ErrInvalidVolume), codes.InvalidArgument},
		{fmt.Errorf("x: %w", mounter.ErrNotFound), codes.NotFound},
		{fmt.Errorf("x: %w", mounter.ErrOutsideRoot), codes.InvalidArgument},
		{fmt.Errorf("x: %w", mounter.ErrNotMountPoint), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", mounter.ErrMountConflict), codes.AlreadyExists},
		{fmt.Errorf("x: %w", mounter.ErrBusy), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", mounter.ErrStale), codes.Unavailable},
		{fmt.Errorf("x: %w", mounter.ErrTimeout), codes.Unavailable},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{status.Error(codes.Aborted, "kept"), codes.Aborted},
		{errors.New("anything else"), codes.Internal},
	}
	for _, c := range cases {
		for name, table := range map[string]csirpc.Codes{"node": NodeCodes, "local": LocalCodes} {
			if got := status.Code(table.Status(c.err)); got != c.code {
				t.Errorf("%s table: %v -> %v, want %v", name, c.err, got, c.code)
			}
		}
	}
}

// The local stack serves the controller and the node on one endpoint: its
// table must agree with both.
func TestLocalCodesAgree(t *testing.T) {
	for _, err := range []error{errNotFound, errUnavailable, errNoRoom, errExists, errNotStaged, discovery.ErrInvalid,
		api.ErrInvalid, api.ErrMalformedID, lockset.ErrBusy, mounter.ErrStale} {
		local := status.Code(LocalCodes.Status(err))
		c, n := status.Code(ControllerCodes.Status(err)), status.Code(NodeCodes.Status(err))
		if (c != codes.Internal && c != local) || (n != codes.Internal && n != local) {
			t.Errorf("%v: local %v, controller %v, node %v", err, local, c, n)
		}
	}
}

func nodeHasOpt(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

func nodeMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestNodePublishMountGroup: kubelet hands a pod's fsGroup over
// (VOLUME_MOUNT_GROUP); the node gives the volume's root to that group,
// except on read-only mounts, and reports a squashed export that refuses.
func TestNodePublishMountGroup(t *testing.T) {
	f := newFakeNode(t, mounter.ModeNFS, "")
	dir := f.dir(t)
	staging := filepath.Join(dir, "globalmount")
	_, err := f.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging,
		VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext})
	nodeMust(t, err)
	withGroup := func(g string) *csi.VolumeCapability {
		c := nodeMountCap(nodeSNW)
		c.GetMount().VolumeMountGroup = g
		return c
	}
	publish := func(target, group string, ro bool) error {
		_, err := f.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging,
			TargetPath: target, VolumeCapability: withGroup(group), VolumeContext: nodeNFSContext, Readonly: ro})
		return err
	}
	target := filepath.Join(dir, "pod1")
	nodeMust(t, publish(target, "2000", false))
	if g, ok := f.Group(target); !ok || g != 2000 {
		t.Fatalf("group of the volume root = %d, %v; want 2000", g, ok)
	}
	roTarget := filepath.Join(dir, "pod2")
	nodeMust(t, publish(roTarget, "3000", true))
	if _, ok := f.Group(roTarget); ok {
		t.Fatal("a read-only publish changed the group")
	}
	wantNodeCode(t, publish(filepath.Join(dir, "pod3"), "staff", false), codes.InvalidArgument)
	f.SetShareGroupErr(syscall.EPERM)
	wantNodeCode(t, publish(filepath.Join(dir, "pod4"), "2000", false), codes.FailedPrecondition)
}
