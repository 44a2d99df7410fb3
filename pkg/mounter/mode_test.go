package mounter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dots-csi/dots/internal/mountfake"
	mount "k8s.io/mount-utils"
)

// localBindFixture makes a root holding one dataset mountpoint known to the
// fake mount table, as a zfs-fuse pool mounted under the root would be.
func localBindFixture(t *testing.T) (s *mountfake.Seams, h *Host, root, source string) {
	t.Helper()
	root = t.TempDir()
	source = filepath.Join(root, "pool", "vol1")
	must(t, os.MkdirAll(source, 0o750))
	s = mountfake.New()
	s.Mounter.MountPoints = []mount.MountPoint{{Device: "pool/vol1", Path: source, Type: "fuse.zfs"}}
	h = newTestHost(t, s, ModeLocalBind, root)
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
	if len(mps) != 1 || mps[0].Device != "pool/vol1" || !reflect.DeepEqual(mps[0].Opts, []string{"bind"}) {
		t.Fatalf("staging mount: %+v", mps)
	}
	log := s.Mounter.GetLog()
	if last := log[len(log)-1]; last.Source != "pool/vol1" || last.FSType != "" {
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

func TestLocalBindRefuses(t *testing.T) {
	s, h, root, _ := localBindFixture(t)
	outside := t.TempDir()
	escape := filepath.Join(root, "escape")
	must(t, os.Symlink(outside, escape))
	plain := filepath.Join(root, "pool", "plain")
	must(t, os.MkdirAll(plain, 0o750))
	s.Mounter.MountPoints = append(s.Mounter.MountPoints,
		mount.MountPoint{Device: "other", Path: outside, Type: "tmpfs"},
		mount.MountPoint{Device: "rootfs", Path: root, Type: "tmpfs"})

	cases := []struct {
		name  string
		path  string
		flags []string
		want  error
	}{
		{"outside the root", outside, nil, ErrOutsideRoot},
		{"symlink out of the root", escape, nil, ErrOutsideRoot},
		{"the root itself", root, nil, ErrOutsideRoot},
		{"missing", filepath.Join(root, "pool", "gone"), nil, ErrNotFound},
		{"not a mount point", plain, nil, ErrNotMountPoint},
		{"relative", "pool/vol1", nil, ErrInvalidVolume},
		{"unclean", root + "/pool/../pool/vol1", nil, ErrInvalidVolume},
		{"empty", "", nil, ErrInvalidVolume},
		{"bad option", filepath.Join(root, "pool", "vol1"), []string{"nolock"}, ErrInvalidOption},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			staging := filepath.Join(t.TempDir(), "st")
			err := h.Stage(context.Background(), Volume{LocalPath: c.path}, staging, c.flags, false)
			if !errors.Is(err, c.want) {
				t.Fatalf("Stage(%s) = %v, want %v", c.path, err, c.want)
			}
			if len(s.MountsAt(staging)) != 0 {
				t.Fatal("refused volume was mounted")
			}
		})
	}
}
