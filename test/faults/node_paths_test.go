//go:build integration

package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"

	"github.com/dots-csi/dots/internal/serverenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/daemon"
	"github.com/dots-csi/dots/pkg/driver"
	"github.com/dots-csi/dots/pkg/mounter"
)

// TestHostileNodePaths: a real node plugin in local-bind mode, over a real
// storage server, answers InvalidArgument to every request whose host path
// is outside its kubelet directory or whose local-bind source is not a
// volume (the pool's state, the volumes directory itself), and mounts
// nothing for it; then a volume staged and published as kubelet does works,
// and unpublish and unstage leave nothing behind.
func TestHostileNodePaths(t *testing.T) {
	begin := time.Now()
	s := serverenv.Start(t, "dotsh", "paths")
	ctrl, _ := s.Client()
	ctx := context.Background()
	created, err := ctrl.CreateVolume(ctx, createReq("pvc-paths", 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	vol := created.GetVolume()
	mountRoot := s.Config.MountRoot
	volumes := mounter.VolumesDir(mountRoot)
	state := filepath.Join(mountRoot, "dots", "state")
	source := vol.GetVolumeContext()[api.ContextLocalPath]
	if filepath.Dir(source) != volumes {
		t.Fatalf("the volume's local path %s is not in the volumes directory %s", source, volumes)
	}
	dir := t.TempDir()
	kubelet := filepath.Join(dir, "kubelet")
	escape := filepath.Join(kubelet, "escape")
	toState := filepath.Join(volumes, "to-state")
	for _, err := range []error{os.MkdirAll(kubelet, 0o750), os.Symlink("/etc", escape), os.Symlink(state, toState)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = os.Remove(toState) })
	node := startLocalBindNode(t, dir, kubelet, volumes)

	staging := filepath.Join(kubelet, "plugins/kubernetes.io/csi/dots.csi.dev/0123abcd/globalmount")
	target := filepath.Join(kubelet, "pods/pod-uid/volumes/kubernetes.io~csi/pvc-paths/mount")
	withLocalPath := func(p string) map[string]string {
		vc := map[string]string{}
		for k, v := range vol.GetVolumeContext() {
			vc[k] = v
		}
		vc[api.ContextLocalPath] = p
		return vc
	}
	id, vc, caps := vol.GetVolumeId(), vol.GetVolumeContext(), mountCaps()[0]
	stage := func(staging string, vc map[string]string) error {
		_, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: caps, VolumeContext: vc})
		return err
	}
	publish := func(staging, target string) error {
		_, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target,
			VolumeCapability: caps, VolumeContext: vc})
		return err
	}
	hostile := []struct {
		name string
		call func() error
	}{
		{"stage at /", func() error { return stage("/", vc) }},
		{"stage at /etc", func() error { return stage("/etc", vc) }},
		{"stage at the kubelet dir", func() error { return stage(kubelet, vc) }},
		{"stage through a symlink to /etc", func() error { return stage(filepath.Join(escape, "globalmount"), vc) }},
		{"stage at a symlink to /etc", func() error { return stage(escape, vc) }},
		{"stage climbing out with ..", func() error { return stage(kubelet+"/../../etc", vc) }},
		{"stage a relative path", func() error { return stage("etc", vc) }},
		{"publish staging /", func() error { return publish("/", target) }},
		{"publish at /", func() error { return publish(staging, "/") }},
		{"publish at /etc", func() error { return publish(staging, "/etc") }},
		{"unstage /etc", func() error {
			_, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: "/etc"})
			return err
		}},
		{"unpublish /", func() error {
			_, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: "/"})
			return err
		}},
		{"health of /", func() error {
			_, err := node.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id, StagingTargetPath: "/"})
			return err
		}},
		{"bind the pool's state dataset", func() error { return stage(staging, withLocalPath(state)) }},
		{"bind the volumes directory", func() error { return stage(staging, withLocalPath(volumes)) }},
		{"bind volumes/../state", func() error { return stage(staging, withLocalPath(volumes+"/../state")) }},
		{"bind a volume-named symlink to the state", func() error { return stage(staging, withLocalPath(toState)) }},
		{"bind the mount root", func() error { return stage(staging, withLocalPath(mountRoot)) }},
	}

	watched := []string{"/", "/etc", dir, mountRoot}
	before := relevantMounts(t, watched, s.Pool.Name)
	if !slices.ContainsFunc(before, func(m string) bool { return strings.Contains(m, " on "+source+" ") }) {
		t.Fatalf("the volume's own mount at %s is not among the watched mounts %q", source, before)
	}
	refused := 0
	for _, h := range hostile {
		err := h.call()
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", h.name, err)
			continue
		}
		refused++
	}
	after := relevantMounts(t, watched, s.Pool.Name)
	mounted := 0
	for _, m := range after {
		if !slices.Contains(before, m) {
			t.Errorf("a refused request mounted %s", m)
			mounted++
		}
	}
	if !slices.Equal(before, after) {
		t.Errorf("the mount table changed:\nbefore %q\nafter  %q", before, after)
	}
	for _, p := range []string{filepath.Join("/etc", "globalmount"), staging, filepath.Dir(target)} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("a refused request created %s: %v", p, err)
		}
	}

	// As kubelet does: the staging and target directories' parents exist.
	for _, d := range []string{filepath.Dir(staging), filepath.Dir(target)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := stage(staging, vc); err != nil {
		t.Fatalf("valid stage: %v", err)
	}
	if err := publish(staging, target); err != nil {
		t.Fatalf("valid publish: %v", err)
	}
	data := []byte("written through the pod's target path\n")
	if err := os.WriteFile(filepath.Join(target, "hello.txt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(source, "hello.txt")); err != nil || string(got) != string(data) {
		t.Fatalf("the dataset holds %q, %v", got, err)
	}
	if _, err := node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target}); err != nil {
		t.Errorf("stats of the published volume: %v", err)
	}
	if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatalf("unpublish: %v", err)
	}
	if _, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatalf("unstage: %v", err)
	}
	for _, p := range []string{target, staging} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	if final := relevantMounts(t, watched, s.Pool.Name); !slices.Equal(before, final) {
		t.Errorf("mounts left behind:\nbefore %q\nafter  %q", before, final)
	}
	if !t.Failed() {
		fmt.Printf("faults: hostile-node-paths ok acked=%d lost=0 orphans=0 duration_s=%.1f refused=%d mounted=%d\n",
			refused, time.Since(begin).Seconds(), refused, mounted)
	}
}

// startLocalBindNode runs the node plugin in this process, on a socket in
// dir, until the test ends, and returns a client of it.
func startLocalBindNode(t *testing.T, dir, kubelet, volumes string) csi.NodeClient {
	t.Helper()
	sock := filepath.Join(dir, "node.sock")
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	cfg := driver.NodeConfig{Endpoint: "unix://" + sock, HTTPAddress: "127.0.0.1:0", NodeOptions: driver.NodeOptions{
		NodeID: "paths-node", MountMode: mounter.ModeLocalBind, LocalBindRoots: []string{volumes}, KubeletDir: kubelet,
		StatsTimeout: mounter.DefaultStatTimeout, UnmountTimeout: mounter.DefaultUnmountTimeout}}
	go func() {
		done <- driver.RunNode(ctx, cfg, func(daemon.Addrs) error { close(ready); return nil })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node plugin: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("node plugin did not start: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("node plugin not ready in a minute")
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return csi.NewNodeClient(conn)
}

// relevantMounts lists, sorted, the kernel's mounts this test could cause:
// those at or below a watched path and those of the pool's datasets.
// Mounts elsewhere (other tests running meanwhile) are left out.
func relevantMounts(t *testing.T, watched []string, pool string) []string {
	t.Helper()
	infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mi := range infos {
		keep := mi.Source == pool || strings.HasPrefix(mi.Source, pool+"/")
		for _, w := range watched {
			keep = keep || mi.MountPoint == w || (w != "/" && strings.HasPrefix(mi.MountPoint, w+"/"))
		}
		if keep {
			out = append(out, fmt.Sprintf("%s on %s (%s, id %d)", mi.Source, mi.MountPoint, strings.Join(mi.MountOptions, ","), mi.ID))
		}
	}
	slices.Sort(out)
	return out
}
