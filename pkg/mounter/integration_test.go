//go:build integration

package mounter

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// These tests mount for real: tmpfs standing in for a dataset mountpoint,
// and raw FUSE mounts with no daemon behind them, which fail exactly like a
// dead NFS server (ENOTCONN once the connection is gone, a hang while it is
// open and unanswered). They need root, as the node plugin does.

const devicePrefix = "dotsm-"

// testDevice names a mount source uniquely and after this process, so a
// later run can tell leftovers of a crashed run.
func testDevice(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s%d-%s", devicePrefix, os.Getpid(), hex.EncodeToString(b))
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("mount tests need root (CAP_SYS_ADMIN), as the node plugin does")
	}
	cleanLeftoverMounts(t)
}

// cleanLeftoverMounts detaches mounts made by test processes that are gone.
func cleanLeftoverMounts(t *testing.T) {
	infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// Deepest first, so stacked leftovers come off cleanly.
	sort.Slice(infos, func(i, j int) bool { return len(infos[i].MountPoint) > len(infos[j].MountPoint) })
	for _, mi := range infos {
		if !strings.HasPrefix(mi.Source, devicePrefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(mi.Source, devicePrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		t.Logf("detaching leftover mount %s at %s", mi.Source, mi.MountPoint)
		_ = unix.Unmount(mi.MountPoint, unix.MNT_DETACH)
	}
}

// mountTmpfs mounts a tmpfs of the given size at dir until the test ends.
func mountTmpfs(t *testing.T, dir, size string) string {
	t.Helper()
	dev := testDevice(t)
	must(t, os.MkdirAll(dir, 0o750))
	if err := unix.Mount(dev, dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dev
}

// mountDeadFuse mounts a FUSE filesystem nobody serves. With hang false the
// device is closed at once and every access fails with ENOTCONN; with hang
// true it stays open, so accesses block until release closes it.
func mountDeadFuse(t *testing.T, dir string, hang bool) (release func()) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o750))
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/fuse: %v", err)
	}
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd)
	if err := unix.Mount(testDevice(t), dir, "fuse.dotsm", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		unix.Close(fd)
		t.Fatalf("mount fuse at %s: %v", dir, err)
	}
	closed := false
	release = func() {
		if !closed {
			closed = true
			unix.Close(fd)
		}
	}
	if !hang {
		release()
	}
	t.Cleanup(func() {
		release()
		_ = unix.Unmount(dir, unix.MNT_DETACH)
	})
	return release
}

// mountinfoAt lists the sources mounted at path, from the kernel.
func mountinfoAt(t *testing.T, path string) []string {
	t.Helper()
	infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mi := range infos {
		if mi.MountPoint == path {
			out = append(out, mi.Source)
		}
	}
	return out
}

func realHost(t *testing.T, root string) *Host {
	t.Helper()
	h, err := New(Config{Mode: ModeLocalBind, LocalBindRoots: []string{root}, StatTimeout: 300 * time.Millisecond, UnmountTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestRealLocalBindRoundTrip(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	source := filepath.Join(root, "pool", "vol1")
	dev := mountTmpfs(t, source, "16m")
	h := realHost(t, filepath.Join(root, "pool"))
	dir := t.TempDir()
	staging, target, roTarget := filepath.Join(dir, "globalmount"), filepath.Join(dir, "pod1", "mount"), filepath.Join(dir, "pod2", "mount")
	vol := Volume{ID: "vol1", LocalPath: source}

	must(t, h.Stage(ctx, vol, staging, nil, false))
	must(t, h.Stage(ctx, vol, staging, nil, false))
	if got := mountinfoAt(t, staging); !reflect.DeepEqual(got, []string{dev}) {
		t.Fatalf("mounts at staging after two stages: %q, want [%s]", got, dev)
	}
	must(t, h.Publish(ctx, staging, target, false))
	must(t, h.Publish(ctx, staging, target, false))
	must(t, h.Publish(ctx, staging, roTarget, true))
	if got := mountinfoAt(t, target); len(got) != 1 {
		t.Fatalf("mounts at target after two publishes: %q", got)
	}

	data := bytes.Repeat([]byte("dots"), 256<<10) // 1 MiB
	must(t, os.WriteFile(filepath.Join(target, "f"), data, 0o600))
	got, err := os.ReadFile(filepath.Join(source, "f"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the source: %d bytes, %v", len(got), err)
	}
	if got, err := os.ReadFile(filepath.Join(roTarget, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the read-only target: %v", err)
	}
	if err := os.WriteFile(filepath.Join(roTarget, "g"), data, 0o600); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write through the read-only target: %v, want EROFS", err)
	}
	if err := h.Publish(ctx, staging, roTarget, false); !errors.Is(err, ErrMountConflict) {
		t.Fatalf("read-write publish over the read-only one: %v", err)
	}

	targets, err := h.PublishedTargets(staging)
	must(t, err)
	sort.Strings(targets)
	if want := []string{target, roTarget}; !reflect.DeepEqual(targets, want) {
		t.Fatalf("PublishedTargets = %q, want %q", targets, want)
	}

	u, err := h.Stats(ctx, target)
	must(t, err)
	if u.TotalBytes != 16<<20 || u.UsedBytes < int64(len(data)) || u.AvailableBytes > u.TotalBytes-int64(len(data)) || u.UsedInodes < 2 {
		t.Fatalf("Stats = %+v for a 16 MiB tmpfs holding 1 MiB", u)
	}
	must(t, h.Check(ctx, roTarget))

	for _, p := range []string{roTarget, target, staging} {
		must(t, h.Unmount(ctx, p))
		must(t, h.Unmount(ctx, p))
		if got := mountinfoAt(t, p); len(got) != 0 {
			t.Fatalf("%s still mounted: %q", p, got)
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s not removed: %v", p, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(source, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data lost after unmounting: %v", err)
	}
}

func TestRealStaleMountDetectedAndReplaced(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	source := filepath.Join(root, "pool", "vol1")
	mountTmpfs(t, source, "4m")
	must(t, os.WriteFile(filepath.Join(source, "f"), []byte("hello"), 0o600))
	h := realHost(t, filepath.Join(root, "pool"))
	staging := filepath.Join(t.TempDir(), "globalmount")
	mountDeadFuse(t, staging, false)

	if err := h.Check(ctx, staging); !errors.Is(err, ErrStale) || !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("Check = %v, want ErrStale (ENOTCONN)", err)
	}
	if _, err := h.Stats(ctx, staging); !errors.Is(err, ErrStale) {
		t.Fatalf("Stats = %v, want ErrStale", err)
	}
	must(t, h.Stage(ctx, Volume{LocalPath: source}, staging, nil, false))
	must(t, h.Check(ctx, staging))
	if got, err := os.ReadFile(filepath.Join(staging, "f")); err != nil || string(got) != "hello" {
		t.Fatalf("read after recovery: %q, %v", got, err)
	}
	if got := mountinfoAt(t, staging); len(got) != 1 {
		t.Fatalf("mounts at staging after recovery: %q", got)
	}
	must(t, h.Unmount(ctx, staging))
}

func TestRealHungMountIsBounded(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	h := realHost(t, t.TempDir())
	target := filepath.Join(t.TempDir(), "mount")
	release := mountDeadFuse(t, target, true)

	start := time.Now()
	if err := h.Check(ctx, target); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Check on a hung mount = %v, want ErrTimeout", err)
	}
	if _, err := h.Stats(ctx, target); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Stats on a hung mount = %v, want ErrTimeout", err)
	}
	// The hung stat is still blocked in the kernel; a second check joins it.
	if err := h.Check(ctx, target); !errors.Is(err, ErrTimeout) {
		t.Fatalf("second Check = %v", err)
	}
	if n := h.calls.pending(); n != 2 {
		t.Fatalf("%d blocked calls, want 2 (one stat, one statfs)", n)
	}
	must(t, h.Unmount(ctx, target))
	t.Logf("check, stats, check and unmount of a hung mount took %v", time.Since(start))
	if got := mountinfoAt(t, target); len(got) != 0 {
		t.Fatalf("still mounted: %q", got)
	}
	release()
	waitNoPending(t, h)
}
