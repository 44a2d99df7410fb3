package driver

import (
	"os"
	"path/filepath"
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
