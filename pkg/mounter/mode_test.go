package mounter

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dots-csi/dots/internal/mountfake"
	"github.com/dots-csi/dots/pkg/api"
	mount "k8s.io/mount-utils"
)

// localBindFixture makes a server's mount root whose volumes directory
// holds one dataset mountpoint known to the fake mount table, as a pool
// mounted there would; the host binds from that volumes directory.
func localBindFixture(t *testing.T) (s *mountfake.Seams, h *Host, root, source string) {
	t.Helper()
	root = t.TempDir()
	source = filepath.Join(VolumesDir(root), "vol1")
	must(t, os.MkdirAll(source, 0o750))
	s = mountfake.New()
	s.Mounter.MountPoints = []mount.MountPoint{{Device: "pool/dots/volumes/vol1", Path: source, Type: "fuse.zfs"}}
	h = newTestHost(t, s, ModeLocalBind, VolumesDir(root))
	return s, h, root, source
}

func TestLocalBindStagePublish(t *testing.T) {
	s, h, _, source := localBindFixture(t)
	ctx := context.Background()
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "st"), filepath.Join(dir, "t")
	vol := Volume{ID: "v1", LocalPath: source, Address: "127.0.0.1", Export: "/dots/vol1"}

	if h.Mode() != ModeLocalBind {
		t.Fatalf("Mode() = %q", h.Mode())
	}
	must(t, h.Stage(ctx, vol, staging, []string{"noatime"}, false))
	mps := s.MountsAt(staging)
	if len(mps) != 1 || mps[0].Device != "pool/dots/volumes/vol1" || !reflect.DeepEqual(mps[0].Opts, []string{"bind", "nosuid", "nodev"}) {
		t.Fatalf("staging mount: %+v", mps)
	}
	log := s.Mounter.GetLog()
	if last := log[len(log)-1]; last.Source != "pool/dots/volumes/vol1" || last.FSType != "" {
		t.Fatalf("not a bind of the dataset mountpoint: %+v", last)
	}
	must(t, h.Stage(ctx, vol, staging, nil, false)) // idempotent
	if len(s.MountsAt(staging)) != 1 {
		t.Fatal("second stage mounted again")
	}
	must(t, h.Publish(ctx, staging, target, false))
	// The dataset's own mountpoint shows the same device but is no target.
	got, err := h.PublishedTargets(staging)
	if err != nil || !reflect.DeepEqual(got, []string{target}) {
		t.Fatalf("PublishedTargets = %q, %v; want [%s]", got, err, target)
	}
}

func TestLocalBindReadOnlyFlag(t *testing.T) {
	s, h, _, source := localBindFixture(t)
	staging := filepath.Join(t.TempDir(), "st")
	must(t, h.Stage(context.Background(), Volume{LocalPath: source}, staging, []string{"ro"}, false))
	if mps := s.MountsAt(staging); len(mps) != 1 || !hasOption(mps[0].Opts, "ro") {
		t.Fatalf("ro flag not applied: %+v", mps)
	}
}

func TestVolumesDir(t *testing.T) {
	if got := VolumesDir("/var/lib/dots/mnt"); got != "/var/lib/dots/mnt/dots/volumes" {
		t.Fatalf("VolumesDir = %s", got)
	}
}

func TestLocalBindRefuses(t *testing.T) {
	s, h, root, _ := localBindFixture(t)
	volumes := VolumesDir(root)
	outside := t.TempDir()
	escape := filepath.Join(volumes, "escape")
	must(t, os.Symlink(outside, escape))
	// A name in the volumes directory that leads to the pool's state.
	state := filepath.Join(root, "dots", "state")
	must(t, os.MkdirAll(state, 0o750))
	toState := filepath.Join(volumes, "to-state")
	must(t, os.Symlink(state, toState))
	plain := filepath.Join(volumes, "plain")
	must(t, os.MkdirAll(plain, 0o750))
	nested := filepath.Join(volumes, "vol1", "sub")
	must(t, os.MkdirAll(nested, 0o750))
	s.Mounter.MountPoints = append(s.Mounter.MountPoints,
		mount.MountPoint{Device: "other", Path: outside, Type: "tmpfs"},
		mount.MountPoint{Device: "pool/dots/state", Path: state, Type: "fuse.zfs"},
		mount.MountPoint{Device: "pool/dots/volumes", Path: volumes, Type: "fuse.zfs"},
		mount.MountPoint{Device: "pool/dots/volumes/vol1/sub", Path: nested, Type: "fuse.zfs"},
		mount.MountPoint{Device: "rootfs", Path: root, Type: "tmpfs"})

	cases := []struct {
		name  string
		path  string
		flags []string
		want  error
	}{
		{"outside the roots", outside, nil, ErrOutsideRoot},
		{"symlink out of the root", escape, nil, ErrOutsideRoot},
		{"symlink to the pool's state", toState, nil, ErrOutsideRoot},
		{"the pool's state dataset", state, nil, ErrOutsideRoot},
		{"the state through ..", volumes + "/../state", nil, ErrOutsideRoot},
		{"the volumes directory itself", volumes, nil, ErrOutsideRoot},
		{"the mount root", root, nil, ErrOutsideRoot},
		{"two levels below", nested, nil, ErrOutsideRoot},
		{"/", "/", nil, ErrOutsideRoot},
		{"missing", filepath.Join(volumes, "gone"), nil, ErrNotFound},
		{"not a mount point", plain, nil, ErrNotMountPoint},
		{"relative", "dots/volumes/vol1", nil, ErrInvalidVolume},
		{"unclean", volumes + "//vol1", nil, ErrInvalidVolume},
		{"empty", "", nil, ErrInvalidVolume},
		{"bad option", filepath.Join(volumes, "vol1"), []string{"nolock"}, ErrInvalidOption},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			staging := filepath.Join(t.TempDir(), "st")
			err := h.Stage(context.Background(), Volume{LocalPath: c.path}, staging, c.flags, false)
			if !errors.Is(err, c.want) {
				t.Fatalf("Stage(%s) = %v, want %v", c.path, err, c.want)
			}
			if errors.Is(c.want, ErrOutsideRoot) && !errors.Is(err, api.ErrInvalid) {
				t.Fatalf("Stage(%s) = %v, not api.ErrInvalid", c.path, err)
			}
			if len(s.MountsAt(staging)) != 0 {
				t.Fatal("refused volume was mounted")
			}
			if _, err := os.Stat(staging); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("refused volume created its staging path: %v", err)
			}
		})
	}
}

// Several servers on one machine: a volume of each is accepted.
func TestLocalBindSeveralRoots(t *testing.T) {
	s := mountfake.New()
	var roots []string
	for i := 0; i < 2; i++ {
		root := VolumesDir(t.TempDir())
		src := filepath.Join(root, "pvc-1")
		must(t, os.MkdirAll(src, 0o750))
		s.Mounter.MountPoints = append(s.Mounter.MountPoints, mount.MountPoint{Device: fmt.Sprintf("pool%d/dots/volumes/pvc-1", i), Path: src, Type: "fuse.zfs"})
		roots = append(roots, root)
	}
	cfg := seamsConfig(s, ModeLocalBind, "")
	cfg.LocalBindRoots = roots
	h, err := New(cfg)
	must(t, err)
	for i, root := range roots {
		staging := filepath.Join(t.TempDir(), "st")
		must(t, h.Stage(context.Background(), Volume{LocalPath: filepath.Join(root, "pvc-1")}, staging, nil, false))
		if mps := s.MountsAt(staging); len(mps) != 1 || mps[0].Device != fmt.Sprintf("pool%d/dots/volumes/pvc-1", i) {
			t.Fatalf("server %d: staging mount %+v", i, mps)
		}
	}
}
