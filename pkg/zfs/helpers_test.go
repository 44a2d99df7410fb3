//go:build integration

package zfs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/zfs"
)

const (
	mib = int64(1 << 20)
	gib = int64(1 << 30)
	// prefix of this package's test pools.
	poolPrefix = "dotsz"
)

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func newPool(t testing.TB) *zfs.Pool {
	return testenv.NewPool(t, poolPrefix, gib)
}

func mustCreate(t testing.TB, p *zfs.Pool, spec zfs.VolumeSpec) *zfs.Volume {
	t.Helper()
	v, err := p.CreateVolume(ctx(t), spec)
	if err != nil {
		t.Fatalf("CreateVolume(%+v): %v", spec, err)
	}
	return v
}

func mustSnapshot(t testing.TB, p *zfs.Pool, vol, name string) *zfs.Snapshot {
	t.Helper()
	s, err := p.CreateSnapshot(ctx(t), vol, name)
	if err != nil {
		t.Fatalf("CreateSnapshot(%s, %s): %v", vol, name, err)
	}
	return s
}

func writeFile(t testing.TB, v *zfs.Volume, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(v.Mountpoint, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, v *zfs.Volume, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(v.Mountpoint, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// zfsNames lists every dataset and snapshot below root with the test's
// own zfs: its view, independent of the code under test.
func zfsNames(t testing.TB, root string) []string {
	t.Helper()
	return strings.Fields(testenv.Zfs(t, "list", "-H", "-r", "-t", "all", "-o", "name", root))
}

func zfsGet(t testing.TB, prop, name string) string {
	t.Helper()
	return strings.TrimSpace(testenv.Zfs(t, "get", "-Hp", "-o", "value", prop, name))
}

func volumeNames(t testing.TB, p *zfs.Pool) []string {
	t.Helper()
	vs, err := p.ListVolumes(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func snapshotNames(t testing.TB, p *zfs.Pool) []string {
	t.Helper()
	ss, err := p.ListSnapshots(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

func wantErr(t testing.TB, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %v", err, sentinel)
	}
}

func zfsListPools(t testing.TB) []string {
	t.Helper()
	return strings.Fields(testenv.Zpool(t, "list", "-H", "-o", "name"))
}
