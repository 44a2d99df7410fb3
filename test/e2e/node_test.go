package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
)

// nodePublishAndRead calls the node plugin as the kubelet does for a pod
// using pv: stage (if the plugin stages), publish, read through the target,
// then unpublish and unstage, leaving no mount behind.
func nodePublishAndRead(t *testing.T, e *env, pv *corev1.PersistentVolume, want string) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+e.nodeSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	node := csi.NewNodeClient(conn)
	ctx := e.ctx

	caps, err := node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	stages := slices.ContainsFunc(caps.GetCapabilities(), func(c *csi.NodeServiceCapability) bool {
		return c.GetRpc().GetType() == csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME
	})
	info, err := node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil || info.GetNodeId() != nodeID {
		t.Fatalf("NodeGetInfo = %v, %v", info, err)
	}

	root := filepath.Join(e.dir, "kubelet")
	staging, target := kubeletDirs(t, root, pv.Name)
	volCap := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}
	id, attrs := pv.Spec.CSI.VolumeHandle, pv.Spec.CSI.VolumeAttributes
	if stages {
		if _, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
			VolumeId: id, StagingTargetPath: staging, VolumeCapability: volCap, VolumeContext: attrs,
		}); err != nil {
			t.Fatalf("NodeStageVolume: %v\n%s", err, e.node.tail(20))
		}
	}
	pub := &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: volCap, VolumeContext: attrs}
	if stages {
		pub.StagingTargetPath = staging
	}
	if _, err := node.NodePublishVolume(ctx, pub); err != nil {
		t.Fatalf("NodePublishVolume: %v\n%s", err, e.node.tail(20))
	}
	data, err := os.ReadFile(filepath.Join(target, "hello.txt"))
	if err != nil || string(data) != want {
		t.Errorf("read through the published volume: %q, %v; want %q", data, err, want)
	}
	stats, err := node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
	if err != nil {
		t.Errorf("NodeGetVolumeStats: %v", err)
	} else {
		t.Logf("volume stats: %v", stats.GetUsage())
	}

	if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Errorf("NodeUnpublishVolume: %v", err)
	}
	if stages {
		if _, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Errorf("NodeUnstageVolume: %v", err)
		}
	}
	leftoverMounts(t, root)
}
