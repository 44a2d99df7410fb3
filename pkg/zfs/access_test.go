//go:build integration

package zfs_test

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs"
)

func owner(t *testing.T, path string) (uid, gid uint32, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSetuid | fs.ModeSticky)
}

// TestAccessAndPublicationsLiveOnThePool: squashing, the anonymous ids and
// the nodes a volume is published to are read back from ZFS, by another
// Pool on the same pool too (a restarted server).
func TestAccessAndPublicationsLiveOnThePool(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	gid := uint32(2000)
	v := mustCreate(t, p, zfs.VolumeSpec{Name: "acl", Capacity: 8 * mib,
		Access: &api.Access{Squash: api.SquashAll, AnonUID: 1000, AnonGID: 1001},
		Root:   &api.Owner{UID: 1000, GID: gid, Mode: fs.ModeSetgid | 0o775}})
	if v.Squash != api.SquashAll || v.AnonUID != 1000 || v.AnonGID != 1001 || len(v.Published) != 0 {
		t.Fatalf("volume access %q %d:%d published %v", v.Squash, v.AnonUID, v.AnonGID, v.Published)
	}
	if u, g, m := owner(t, v.Mountpoint); u != 1000 || g != gid || m != fs.ModeSetgid|0o775 {
		t.Fatalf("root directory %d:%d %v, want 1000:2000 2775", u, g, m)
	}
	pubs := []zfs.Publication{{Node: "a@10.0.0.2"}, {Node: "b@10.0.0.3,fd00::3", ReadOnly: true}}
	if _, err := p.SetPublished(c, "acl", pubs); err != nil {
		t.Fatal(err)
	}
	got, err := p.GetVolume(c, "acl")
	if err != nil || len(got.Published) != 2 || got.Published[0] != pubs[0] || got.Published[1] != pubs[1] {
		t.Fatalf("published %+v, %v", got.Published, err)
	}
	if _, err := p.SetPublished(c, "acl", []zfs.Publication{{Node: "a@10.0.0.2\nb"}}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("a node ID with a newline: %v, want ErrInvalid", err)
	}
	if _, err := p.SetPublished(c, "acl", nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.GetVolume(c, "acl"); len(got.Published) != 0 {
		t.Fatalf("published after clearing: %+v", got.Published)
	}
	if src := zfsGetSource(t, "dots:published", v.Dataset); src == "local" {
		t.Errorf("dots:published is still set locally after the last node went")
	}
	// A volume created without access settings keeps the server's.
	d := mustCreate(t, p, zfs.VolumeSpec{Name: "plain", Capacity: 8 * mib})
	if d.Squash != api.SquashDefault {
		t.Errorf("default squash read back as %q", d.Squash)
	}
	if u, g, m := owner(t, d.Mountpoint); u != 0 || g != 0 || m != 0o755 {
		t.Errorf("root of a volume without an owner %d:%d %v", u, g, m)
	}
}

// TestRootOwnerNeverOverwrites: a retried create applies the owner to an
// untouched root; a root that holds data or was changed stays as it is.
func TestRootOwnerNeverOverwrites(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	v := mustCreate(t, p, zfs.VolumeSpec{Name: "kept", Capacity: 8 * mib})
	writeFile(t, v, "data", "x")
	spec := zfs.VolumeSpec{Name: "kept", Capacity: 8 * mib, Root: &api.Owner{UID: 7, GID: 7, Mode: 0o700}}
	if _, err := p.CreateVolume(c, spec); !errors.Is(err, zfs.ErrExists) {
		t.Fatalf("create again: %v", err)
	}
	if u, g, m := owner(t, v.Mountpoint); u != 0 || g != 0 || m != 0o755 {
		t.Errorf("a root holding data was changed to %d:%d %v", u, g, m)
	}
	// An empty, untouched root: the retry finishes what the first create
	// may not have.
	e := mustCreate(t, p, zfs.VolumeSpec{Name: "empty", Capacity: 8 * mib})
	spec.Name = "empty"
	if _, err := p.CreateVolume(c, spec); !errors.Is(err, zfs.ErrExists) {
		t.Fatalf("create again: %v", err)
	}
	if u, g, m := owner(t, e.Mountpoint); u != 7 || g != 7 || m != 0o700 {
		t.Errorf("retried create left the root %d:%d %v, want 7:7 700", u, g, m)
	}
}

func zfsGetSource(t *testing.T, prop, name string) string {
	t.Helper()
	return strings.TrimSpace(testenv.Zfs(t, "get", "-H", "-o", "source", prop, name))
}
