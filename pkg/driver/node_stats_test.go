package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/mounter"
)

func TestNodeGetVolumeStatsErrors(t *testing.T) {
	f := newFakeNode(t, mounter.ModeNFS, "")
	dir := f.dir(t)
	staging := filepath.Join(dir, "st")
	_, err := f.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext})
	nodeMust(t, err)
	stats := func(id, path string) error {
		_, err := f.NodeGetVolumeStats(nodeCtx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: path})
		return err
	}
	wantNodeCode(t, stats("", staging), codes.InvalidArgument)
	wantNodeCode(t, stats(nodeVolID, ""), codes.InvalidArgument)
	wantNodeCode(t, stats(nodeVolID, "some/path"), codes.NotFound)
	wantNodeCode(t, stats(nodeVolID, filepath.Join(dir, "missing")), codes.NotFound)
	wantNodeCode(t, stats(nodeVolID, dir), codes.NotFound) // exists, nothing mounted
	nodeMust(t, stats(nodeVolID, staging))

	f.SetStatErr(staging, &os.PathError{Op: "statfs", Path: staging, Err: syscall.ESTALE})
	wantNodeCode(t, stats(nodeVolID, staging), codes.Unavailable)
	f.SetStatErr(staging, nil)
	f.Block(t, staging)
	start := time.Now()
	wantNodeCode(t, stats(nodeVolID, staging), codes.Unavailable)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stats of a hung mount took %v", d)
	}
}

func TestNodeGetVolumeHealth(t *testing.T) {
	f := newFakeNode(t, mounter.ModeNFS, "")
	dir := f.dir(t)
	staging, target := filepath.Join(dir, "st"), filepath.Join(dir, "t")
	health := func(req *csi.NodeGetVolumeHealthRequest) (*csi.VolumeHealth, error) {
		rsp, err := f.NodeGetVolumeHealth(nodeCtx, req)
		return rsp.GetVolumeHealth(), err
	}
	_, err := health(&csi.NodeGetVolumeHealthRequest{})
	wantNodeCode(t, err, codes.InvalidArgument)
	_, err = health(&csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID})
	wantNodeCode(t, err, codes.NotFound) // never staged here

	// Paths the CO tried but that are not mounted: inaccessible.
	h, err := health(&csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID, StagingTargetPath: staging})
	nodeMust(t, err)
	if len(h.GetHealthStatuses()) != 1 || h.GetHealthStatuses()[0].GetReason() != ReasonNotMounted {
		t.Fatalf("unmounted path: %v", h)
	}

	_, err = f.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext})
	nodeMust(t, err)
	_, err = f.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, TargetPath: target, VolumeCapability: nodeMountCap(nodeSNW)})
	nodeMust(t, err)
	h, err = health(&csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID})
	nodeMust(t, err)
	if h.GetVolumeId() != nodeVolID || len(h.GetHealthStatuses()) != 0 {
		t.Fatalf("healthy volume: %v", h)
	}

	// A stale target and a stale staging path make one entry, not two.
	f.SetStatErr(staging, syscall.ESTALE)
	f.SetStatErr(target, syscall.ESTALE)
	h, err = health(&csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID})
	nodeMust(t, err)
	if e := h.GetHealthStatuses(); len(e) != 1 || e[0].GetStatus() != csi.VolumeHealthErrorType_INACCESSIBLE || e[0].GetReason() != ReasonStaleMount {
		t.Fatalf("stale volume: %v", h)
	}
	f.SetStatErr(staging, nil)
	f.SetStatErr(target, nil)
	f.Block(t, target)
	h, err = health(&csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID, VolumePublishPath: target})
	nodeMust(t, err)
	if e := h.GetHealthStatuses(); len(e) != 1 || e[0].GetReason() != ReasonNotResponding {
		t.Fatalf("hung volume: %v", h)
	}
}

// TestNodeVolumeHealthServerDown: a volume whose NFS server refuses
// connections is INACCESSIBLE, once, however many paths it has; the check
// dials the server named in the volume context at stage.
func TestNodeVolumeHealthServerDown(t *testing.T) {
	f := newFakeNode(t, mounter.ModeNFS, "")
	dir := f.dir(t)
	staging, target := filepath.Join(dir, "st"), filepath.Join(dir, "t")
	_, err := f.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext})
	nodeMust(t, err)
	_, err = f.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging, TargetPath: target, VolumeCapability: nodeMountCap(nodeSNW)})
	nodeMust(t, err)
	var dialed []string
	f.dial = func(_ context.Context, addr string) error {
		dialed = append(dialed, addr)
		return syscall.ECONNREFUSED
	}
	rsp, err := f.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID})
	nodeMust(t, err)
	e := rsp.GetVolumeHealth().GetHealthStatuses()
	if len(e) != 1 || e[0].GetStatus() != csi.VolumeHealthErrorType_INACCESSIBLE || e[0].GetReason() != "ServerUnreachable" ||
		!strings.Contains(e[0].GetMessage(), "10.96.0.12:20490") {
		t.Fatalf("server down: %v", rsp.GetVolumeHealth())
	}
	if len(dialed) != 1 || dialed[0] != "10.96.0.12:20490" {
		t.Errorf("dialed %v", dialed)
	}
	// Unstaged: nothing left to check, and the server is not asked.
	_, err = f.NodeUnpublishVolume(nodeCtx, &csi.NodeUnpublishVolumeRequest{VolumeId: nodeVolID, TargetPath: target})
	nodeMust(t, err)
	_, err = f.NodeUnstageVolume(nodeCtx, &csi.NodeUnstageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: staging})
	nodeMust(t, err)
	rsp, err = f.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID, StagingTargetPath: staging})
	nodeMust(t, err)
	if len(dialed) != 1 {
		t.Errorf("dialed an unstaged volume's server: %v (%v)", dialed, rsp)
	}
}

func TestNFSEndpoint(t *testing.T) {
	for _, tc := range []struct {
		vol  mounter.Volume
		want string
	}{
		{mounter.Volume{Address: "10.0.0.1"}, "10.0.0.1:2049"},
		{mounter.Volume{Address: "10.0.0.1", Port: 20490}, "10.0.0.1:20490"},
		{mounter.Volume{Address: "fd00::1"}, "[fd00::1]:2049"},
		{mounter.Volume{Address: "[fd00::1]", Port: 7}, "[fd00::1]:7"},
		{mounter.Volume{Address: "nfs.example"}, "nfs.example:2049"},
		{mounter.Volume{LocalPath: "/x"}, ""},
	} {
		if got := nfsEndpoint(tc.vol); got != tc.want {
			t.Errorf("nfsEndpoint(%+v) = %q, want %q", tc.vol, got, tc.want)
		}
	}
}
