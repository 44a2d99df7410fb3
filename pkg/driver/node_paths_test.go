package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/mounter"
)

// Every host path of every node call must lie below the kubelet directory:
// anything else is refused before the volume's lock is taken and before
// anything is created or mounted.
func TestNodeRefusesHostilePaths(t *testing.T) {
	f := newFakeNode(t, mounter.ModeNFS, "")
	toEtc := filepath.Join(f.kubelet, "to-etc")
	nodeMust(t, os.Symlink("/etc", toEtc))
	good := filepath.Join(f.dir(t), "mount")
	hostile := map[string]string{
		"root":                     "/",
		"etc":                      "/etc",
		"the kubelet dir":          f.kubelet,
		"climbing out":             f.kubelet + "/../etc",
		"climbing inside":          f.kubelet + "/pods/../x",
		"symlink to /etc":          toEtc,
		"below a symlink to /etc":  filepath.Join(toEtc, "dots-node-paths-test"),
		"relative":                 "pods/x/mount",
		"very long":                f.kubelet + "/" + strings.Repeat("x", 5000),
		"NUL byte":                 f.kubelet + "/pods/x\x00/../../../etc",
		"a sibling of the kubelet": f.kubelet + "-evil/mount",
	}
	// The volume is busy: a refusal must come before the lock (Aborted).
	if !f.locks.TryAcquire(nodeVolID) {
		t.Fatal("lock taken")
	}
	defer f.locks.Release(nodeVolID)

	calls := map[string]func(p string) error{
		"stage": func(p string) error {
			_, err := f.NodeStageVolume(nodeCtx, &csi.NodeStageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: p,
				VolumeCapability: nodeMountCap(nodeSNW), VolumeContext: nodeNFSContext})
			return err
		},
		"unstage": func(p string) error {
			_, err := f.NodeUnstageVolume(nodeCtx, &csi.NodeUnstageVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: p})
			return err
		},
		"publish staging": func(p string) error {
			_, err := f.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: p,
				TargetPath: good, VolumeCapability: nodeMountCap(nodeSNW)})
			return err
		},
		"publish target": func(p string) error {
			_, err := f.NodePublishVolume(nodeCtx, &csi.NodePublishVolumeRequest{VolumeId: nodeVolID, StagingTargetPath: good,
				TargetPath: p, VolumeCapability: nodeMountCap(nodeSNW)})
			return err
		},
		"unpublish": func(p string) error {
			_, err := f.NodeUnpublishVolume(nodeCtx, &csi.NodeUnpublishVolumeRequest{VolumeId: nodeVolID, TargetPath: p})
			return err
		},
		"health staging": func(p string) error {
			_, err := f.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID, StagingTargetPath: p})
			return err
		},
		"health target": func(p string) error {
			_, err := f.NodeGetVolumeHealth(nodeCtx, &csi.NodeGetVolumeHealthRequest{VolumeId: nodeVolID, VolumePublishPath: p})
			return err
		},
	}
	for call, fn := range calls {
		for name, p := range hostile {
			t.Run(call+"/"+name, func(t *testing.T) {
				wantNodeCode(t, fn(p), codes.InvalidArgument)
			})
		}
	}
	// Stats answers NotFound, as the spec asks of a path the volume is not at.
	for _, p := range hostile {
		_, err := f.NodeGetVolumeStats(nodeCtx, &csi.NodeGetVolumeStatsRequest{VolumeId: nodeVolID, VolumePath: p})
		wantNodeCode(t, err, codes.NotFound)
		_, err = f.NodeGetVolumeStats(nodeCtx, &csi.NodeGetVolumeStatsRequest{VolumeId: nodeVolID, VolumePath: good, StagingTargetPath: p})
		wantNodeCode(t, err, codes.NotFound)
	}

	if log := f.Mounter.GetLog(); len(log) != 0 {
		t.Fatalf("refused requests mounted or unmounted: %+v", log)
	}
	if _, err := os.Lstat("/etc/dots-node-paths-test"); !os.IsNotExist(err) {
		t.Fatalf("a refused request created a directory in /etc: %v", err)
	}
	if _, err := os.Lstat(good); !os.IsNotExist(err) {
		t.Fatalf("a refused request created %s: %v", good, err)
	}
}
