package mounter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/mountfake"
	"github.com/dots-csi/dots/internal/poll"
	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

var nfsVol = Volume{ID: "vol-1", Address: "10.96.0.12", Port: 20490, Export: "/dots/pvc-1"}

func TestNewConfig(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := []Config{
		{Mode: "nfs3"},
		{Mode: ModeNFS, LocalBindRoots: []string{root}},
		{Mode: ModeLocalBind},
		{Mode: ModeLocalBind, LocalBindRoots: []string{}},
		{Mode: ModeLocalBind, LocalBindRoots: []string{"relative"}},
		{Mode: ModeLocalBind, LocalBindRoots: []string{"/"}},
		{Mode: ModeLocalBind, LocalBindRoots: []string{root + "/x/.."}},
		{Mode: ModeLocalBind, LocalBindRoots: []string{root, filepath.Join(root, "missing")}},
		{Mode: ModeLocalBind, LocalBindRoots: []string{file}},
		{Mode: ModeNFS, StatTimeout: -1},
		{Mode: ModeNFS, KubeletDir: "relative/kubelet"},
		{Mode: ModeNFS, KubeletDir: "/"},
		{Mode: ModeNFS, KubeletDir: "/var/lib/kubelet/"},
		{Mode: ModeNFS, KubeletDir: "/var/lib/../kubelet"},
	}
	for _, cfg := range bad {
		cfg.Mount = mount.NewFakeMounter(nil)
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	h, err := New(Config{Mount: mount.NewFakeMounter(nil)})
	if err != nil || h.Mode() != ModeNFS || h.statTimeout != DefaultStatTimeout || h.unmountTimeout != DefaultUnmountTimeout || h.KubeletDir() != DefaultKubeletDir {
		t.Fatalf("zero Config: %v, %+v", err, h)
	}
}

func TestStageNFS(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	staging := filepath.Join(t.TempDir(), "globalmount") // kubelet's parent exists; the leaf may not

	if err := h.Stage(ctx, nfsVol, staging, []string{"noatime"}, false); err != nil {
		t.Fatal(err)
	}
	mps := s.MountsAt(staging)
	if len(mps) != 1 {
		t.Fatalf("mounts at staging: %+v", mps)
	}
	want := mount.MountPoint{Device: "10.96.0.12:/dots/pvc-1", Path: staging, Type: "nfs4",
		Opts: []string{"vers=4.1", "hard", "timeo=600", "retrans=2", "noresvport", "nosuid", "nodev", "noatime", "port=20490"}}
	if !reflect.DeepEqual(mps[0], want) {
		t.Fatalf("mount\n got %+v\nwant %+v", mps[0], want)
	}

	// Idempotent: the same call changes nothing.
	before := len(s.Mounter.GetLog())
	if err := h.Stage(ctx, nfsVol, staging, []string{"noatime"}, false); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Mounter.GetLog()); n != before {
		t.Fatalf("second Stage did %d more mount actions", n-before)
	}

	// Another export, or read-only, at the same path is a conflict.
	other := nfsVol
	other.Export = "/dots/pvc-2"
	if err := h.Stage(ctx, other, staging, nil, false); !errors.Is(err, ErrMountConflict) {
		t.Fatalf("other export: %v, want ErrMountConflict", err)
	}
	if err := h.Stage(ctx, nfsVol, staging, nil, true); !errors.Is(err, ErrMountConflict) {
		t.Fatalf("read-only over read-write: %v, want ErrMountConflict", err)
	}
}

func TestStageRejectsBeforeMounting(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	staging := filepath.Join(t.TempDir(), "st")
	ctx := context.Background()
	cases := []struct {
		vol   Volume
		flags []string
		ro    bool
		want  error
	}{
		{nfsVol, []string{"vers=3"}, false, ErrInvalidOption},
		{nfsVol, []string{"rw"}, true, ErrInvalidOption}, // rw with a reader-only access mode
		{Volume{Address: "10.0.0.1"}, nil, false, ErrInvalidVolume},
	}
	for _, c := range cases {
		if err := h.Stage(ctx, c.vol, staging, c.flags, c.ro); !errors.Is(err, c.want) {
			t.Errorf("Stage(%+v, %q, ro=%v) = %v, want %v", c.vol, c.flags, c.ro, err, c.want)
		}
	}
	if err := h.Stage(ctx, nfsVol, "relative/path", nil, false); !errors.Is(err, ErrInvalidVolume) {
		t.Errorf("relative staging path: %v", err)
	}
	if len(s.Mounter.GetLog()) != 0 {
		t.Fatalf("refused calls mounted: %+v", s.Mounter.GetLog())
	}
	if _, err := os.Stat(staging); !os.IsNotExist(err) {
		t.Fatalf("refused call created the staging path: %v", err)
	}
}

func TestStageReadOnlyAccess(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	staging := filepath.Join(t.TempDir(), "st")
	if err := h.Stage(context.Background(), nfsVol, staging, nil, true); err != nil {
		t.Fatal(err)
	}
	if mps := s.MountsAt(staging); len(mps) != 1 || !hasOption(mps[0].Opts, "ro") {
		t.Fatalf("reader-only staging not mounted ro: %+v", mps)
	}
	if err := h.Stage(context.Background(), nfsVol, staging, nil, true); err != nil {
		t.Fatalf("idempotent read-only stage: %v", err)
	}
}

func TestStageRecoversStaleMount(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ESTALE, syscall.ENOTCONN, syscall.EIO} {
		t.Run(errno.Error(), func(t *testing.T) {
			s := mountfake.New()
			h := newTestHost(t, s, ModeNFS, "")
			ctx := context.Background()
			staging := filepath.Join(t.TempDir(), "st")
			if err := h.Stage(ctx, nfsVol, staging, nil, false); err != nil {
				t.Fatal(err)
			}
			s.SetStatErr(staging, &os.PathError{Op: "stat", Path: staging, Err: errno})
			if err := h.Check(ctx, staging); !errors.Is(err, ErrStale) {
				t.Fatalf("Check = %v, want ErrStale", err)
			}
			s.Mounter.ResetLog()
			// The stale handle goes away once the path is unmounted.
			s.Mounter.UnmountFunc = func(string) error { s.SetStatErr(staging, nil); return nil }
			if err := h.Stage(ctx, nfsVol, staging, nil, false); err != nil {
				t.Fatal(err)
			}
			log := s.Mounter.GetLog()
			if len(log) != 2 || log[0].Action != mount.FakeActionUnmount || log[1].Action != mount.FakeActionMount {
				t.Fatalf("want unmount then mount, got %+v", log)
			}
			if err := h.Check(ctx, staging); err != nil {
				t.Fatalf("Check after recovery: %v", err)
			}
			if len(s.MountsAt(staging)) != 1 {
				t.Fatalf("mounts after recovery: %+v", s.MountsAt(staging))
			}
		})
	}
}

func TestStageRecoversHungMount(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	staging := filepath.Join(t.TempDir(), "st")
	if err := h.Stage(ctx, nfsVol, staging, nil, false); err != nil {
		t.Fatal(err)
	}
	release := s.Block(t, staging)
	if err := h.Check(ctx, staging); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Check on a hung mount = %v, want ErrTimeout", err)
	}
	s.Mounter.UnmountFunc = func(string) error { release(); return nil }
	if err := h.Stage(ctx, nfsVol, staging, nil, false); err != nil {
		t.Fatal(err)
	}
	if len(s.MountsAt(staging)) != 1 {
		t.Fatalf("mounts after recovery: %+v", s.MountsAt(staging))
	}
}

func TestHungStatIsJoinedNotRepeated(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	staging := filepath.Join(t.TempDir(), "st")
	if err := h.Stage(ctx, nfsVol, staging, nil, false); err != nil {
		t.Fatal(err)
	}
	release := s.Block(t, staging)
	for i := 0; i < 3; i++ {
		if err := h.Check(ctx, staging); !errors.Is(err, ErrTimeout) {
			t.Fatalf("Check %d = %v, want ErrTimeout", i, err)
		}
	}
	if n := s.StatCalls(staging); n != 1 {
		t.Fatalf("%d stat calls on the hung path, want 1 (later checks join it)", n)
	}
	release()
	// Once the blocked call returns, the next check makes a fresh one.
	waitNoPending(t, h)
	if err := h.Check(ctx, staging); err != nil {
		t.Fatalf("Check after release: %v", err)
	}
	if n := s.StatCalls(staging); n != 2 {
		t.Fatalf("%d stat calls, want 2", n)
	}
}

func TestCheckCancelled(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	h.statTimeout = 0 // only the context bounds the call
	staging := filepath.Join(t.TempDir(), "st")
	if err := h.Stage(context.Background(), nfsVol, staging, nil, false); err != nil {
		t.Fatal(err)
	}
	s.Block(t, staging)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Check(ctx, staging); !errors.Is(err, context.Canceled) {
		t.Fatalf("Check = %v, want context.Canceled", err)
	}
}

func TestCheckNotMounted(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	dir := t.TempDir()
	ctx := context.Background()
	if err := h.Check(ctx, dir); !errors.Is(err, ErrNotMountPoint) {
		t.Errorf("plain directory: %v", err)
	}
	if err := h.Check(ctx, filepath.Join(dir, "missing")); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing path: %v", err)
	}
	if err := h.Check(ctx, "some/path"); !errors.Is(err, ErrNotFound) {
		t.Errorf("relative path: %v", err)
	}
}

func TestPublish(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	dir := t.TempDir()
	staging, target, target2 := filepath.Join(dir, "st"), filepath.Join(dir, "pod1", "mount"), filepath.Join(dir, "pod2", "mount")

	if err := h.Publish(ctx, staging, target, false); !errors.Is(err, ErrNotMountPoint) {
		t.Fatalf("publish before stage: %v, want ErrNotMountPoint", err)
	}
	if err := h.Stage(ctx, nfsVol, staging, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := h.Publish(ctx, staging, target, false); err != nil {
		t.Fatal(err)
	}
	if err := h.Publish(ctx, staging, target2, true); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		ro   bool
	}{{target, false}, {target2, true}} {
		mps := s.MountsAt(c.path)
		if len(mps) != 1 || mps[0].Device != "10.96.0.12:/dots/pvc-1" || hasOption(mps[0].Opts, "ro") != c.ro {
			t.Fatalf("bind at %s: %+v", c.path, mps)
		}
	}
	before := len(s.Mounter.GetLog())
	if err := h.Publish(ctx, staging, target2, true); err != nil {
		t.Fatalf("idempotent publish: %v", err)
	}
	if n := len(s.Mounter.GetLog()); n != before {
		t.Fatalf("idempotent publish mounted again")
	}
	if err := h.Publish(ctx, staging, target2, false); !errors.Is(err, ErrMountConflict) {
		t.Fatalf("read-write over read-only target: %v, want ErrMountConflict", err)
	}

	got, err := h.PublishedTargets(staging)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if want := []string{target, target2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("PublishedTargets = %q, want %q", got, want)
	}

	// A stale staging mount fails the publish instead of binding a dead mount.
	s.SetStatErr(staging, syscall.ESTALE)
	if err := h.Publish(ctx, staging, filepath.Join(dir, "pod3", "mount"), false); !errors.Is(err, ErrStale) {
		t.Fatalf("publish from stale staging: %v, want ErrStale", err)
	}
}

func TestPublishFromReadOnlyStaging(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "st"), filepath.Join(dir, "t")
	must(t, h.Stage(ctx, nfsVol, staging, []string{"ro"}, false))
	for i := 0; i < 2; i++ {
		if err := h.Publish(ctx, staging, target, false); err != nil {
			t.Fatalf("publish %d from a read-only staging mount: %v", i, err)
		}
	}
	if mps := s.MountsAt(target); len(mps) != 1 || !hasOption(mps[0].Opts, "ro") {
		t.Fatalf("target of a read-only staging mount: %+v", mps)
	}
}

func TestPublishRecoversStaleTarget(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "st"), filepath.Join(dir, "t")
	if err := h.Stage(ctx, nfsVol, staging, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := h.Publish(ctx, staging, target, false); err != nil {
		t.Fatal(err)
	}
	s.SetStatErr(target, syscall.ESTALE)
	s.Mounter.UnmountFunc = func(p string) error {
		if p == target {
			s.SetStatErr(target, nil)
		}
		return nil
	}
	if err := h.Publish(ctx, staging, target, false); err != nil {
		t.Fatal(err)
	}
	if len(s.MountsAt(target)) != 1 || len(s.MountsAt(staging)) != 1 {
		t.Fatalf("after recovery: target %+v staging %+v", s.MountsAt(target), s.MountsAt(staging))
	}
}

func TestPublishedTargetsIgnoresOtherVolumes(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	dir := t.TempDir()
	other := nfsVol
	other.Export = "/dots/pvc-2"
	must(t, h.Stage(ctx, nfsVol, filepath.Join(dir, "st1"), nil, false))
	must(t, h.Stage(ctx, other, filepath.Join(dir, "st2"), nil, false))
	must(t, h.Publish(ctx, filepath.Join(dir, "st2"), filepath.Join(dir, "t2"), false))
	got, err := h.PublishedTargets(filepath.Join(dir, "st1"))
	if err != nil || len(got) != 0 {
		t.Fatalf("PublishedTargets(st1) = %q, %v; want none", got, err)
	}
	got, err = h.PublishedTargets(filepath.Join(dir, "not-staged"))
	if err != nil || len(got) != 0 {
		t.Fatalf("PublishedTargets(not staged) = %q, %v; want none", got, err)
	}
}

func TestStats(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	dir := t.TempDir()
	staging := filepath.Join(dir, "st")
	must(t, h.Stage(ctx, nfsVol, staging, nil, false))

	s.SetStatfs(staging, unix.Statfs_t{Bsize: 1 << 20, Frsize: 4096, Blocks: 1000, Bfree: 400, Bavail: 300, Files: 500, Ffree: 120}, nil)
	u, err := h.Stats(ctx, staging)
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{TotalBytes: 4096000, AvailableBytes: 1228800, UsedBytes: 2457600, TotalInodes: 500, AvailableInodes: 120, UsedInodes: 380}
	if u != want {
		t.Fatalf("Stats = %+v, want %+v", u, want)
	}
	// Without a fragment size the block size is the unit.
	s.SetStatfs(staging, unix.Statfs_t{Bsize: 512, Blocks: 10, Bfree: 10, Bavail: 10}, nil)
	if u, _ := h.Stats(ctx, staging); u.TotalBytes != 5120 || u.UsedBytes != 0 {
		t.Fatalf("Bsize fallback: %+v", u)
	}

	s.SetStatfs(staging, unix.Statfs_t{}, syscall.ESTALE)
	if _, err := h.Stats(ctx, staging); !errors.Is(err, ErrStale) {
		t.Fatalf("stale: %v", err)
	}
	s.SetStatfs(staging, unix.Statfs_t{}, nil)
	s.Block(t, staging)
	if _, err := h.Stats(ctx, staging); !errors.Is(err, ErrTimeout) {
		t.Fatalf("hung: %v", err)
	}
	if _, err := h.Stats(ctx, dir); !errors.Is(err, ErrNotMountPoint) {
		t.Fatalf("not mounted: %v", err)
	}
	if _, err := h.Stats(ctx, filepath.Join(dir, "missing")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := h.Stats(ctx, "some/path"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("relative: %v", err)
	}
}

func TestUsageClamps(t *testing.T) {
	u := usageOf(&unix.Statfs_t{Frsize: 1 << 20, Blocks: 1 << 62, Bfree: 1 << 63, Bavail: 1, Files: 1, Ffree: 5})
	if u.TotalBytes != 1<<63-1 || u.UsedBytes != 0 || u.UsedInodes != 0 {
		t.Fatalf("usageOf did not clamp: %+v", u)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitNoPending(t *testing.T, h *Host) {
	t.Helper()
	poll.Until(t, 5*time.Second, "blocked calls finish", func() error {
		if n := h.calls.pending(); n > 0 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
}
