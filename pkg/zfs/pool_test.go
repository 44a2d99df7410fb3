//go:build integration

package zfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/zfs"
)

// reopenConfig is the Config testenv.NewPool used, rebuilt from the pool.
func reopenConfig(t testing.TB, p *zfs.Pool) zfs.Config {
	mp := zfsGet(t, "mountpoint", p.Name())
	return zfs.Config{Pool: p.Name(), Vdevs: []string{filepath.Join(filepath.Dir(mp), "pool.img")}, Mountpoint: mp, Runner: testenv.Runner(t)}
}

func TestReopenAndImport(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	if p.StateDir() == "" || !isDir(p.StateDir()) {
		t.Fatalf("StateDir %q is not a directory", p.StateDir())
	}
	if err := os.WriteFile(filepath.Join(p.StateDir(), "recovery"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := mustCreate(t, p, zfs.VolumeSpec{Name: "a", Capacity: 10 * mib})
	b := mustCreate(t, p, zfs.VolumeSpec{Name: "b", Capacity: 10 * mib, Thick: true})
	writeFile(t, a, "f", "persisted")
	mustSnapshot(t, p, "a", "snap")
	if a.ExportID == b.ExportID {
		t.Fatalf("duplicate export id %d", a.ExportID)
	}
	cfg := reopenConfig(t, p)

	// Open of an imported pool: same volumes, same export ids.
	p2, err := zfs.Open(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := p2.GetVolume(c, "a"); got == nil || got.ExportID != a.ExportID {
		t.Errorf("export id after reopen = %+v, want %d", got, a.ExportID)
	}
	// New ids keep counting up across reopen.
	cv := mustCreate(t, p2, zfs.VolumeSpec{Name: "c", Capacity: 10 * mib})
	if cv.ExportID <= b.ExportID {
		t.Errorf("new export id %d not after %d", cv.ExportID, b.ExportID)
	}

	// Export, then Open imports it again (the move to another node).
	if err := p2.ExportPool(c); err != nil {
		t.Fatal(err)
	}
	if out := zfsListPools(t); slices.Contains(out, p.Name()) {
		t.Fatalf("pool still imported after ExportPool")
	}
	noCreate := cfg
	p3, err := zfs.Open(c, noCreate)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if names := volumeNames(t, p3); !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Errorf("volumes after import = %v", names)
	}
	got, err := p3.GetVolume(c, "b")
	if err != nil || got.ExportID != b.ExportID || !got.Thick || got.Capacity != 10*mib {
		t.Errorf("b after import = %+v, %v", got, err)
	}
	av, _ := p3.GetVolume(c, "a")
	if av == nil || readFile(t, av, "f") != "persisted" {
		t.Errorf("data lost across export/import")
	}
	if names := snapshotNames(t, p3); !slices.Equal(names, []string{"snap"}) {
		t.Errorf("snapshots after import = %v", names)
	}
	if b, err := os.ReadFile(filepath.Join(p3.StateDir(), "recovery")); err != nil || string(b) != "x" {
		t.Errorf("state dir content after import: %q, %v", b, err)
	}
	if err := p3.Healthy(); err != nil {
		t.Errorf("Healthy: %v", err)
	}
}

func TestOpenMissingPoolWithoutCreate(t *testing.T) {
	dir := t.TempDir()
	_, err := zfs.Open(ctx(t), zfs.Config{Pool: "dotsz-absent", Vdevs: []string{filepath.Join(dir, "none.img")}, Runner: testenv.Runner(t)})
	wantErr(t, err, zfs.ErrNotFound)
	if _, serr := os.Stat(filepath.Join(dir, "none.img")); !os.IsNotExist(serr) {
		t.Errorf("Open without Create made a file")
	}
}

func TestCapacity(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	before, err := p.Capacity(c)
	if err != nil {
		t.Fatal(err)
	}
	if before.Size != before.Used+before.Available || before.Available < 800*mib || before.Size > gib {
		t.Fatalf("capacity = %+v", before)
	}
	mustCreate(t, p, zfs.VolumeSpec{Name: "thick", Capacity: 100 * mib, Thick: true})
	after, err := p.Capacity(c)
	if err != nil {
		t.Fatal(err)
	}
	if before.Available-after.Available < 100*mib {
		t.Errorf("thick volume did not reserve: available %d -> %d", before.Available, after.Available)
	}
}

// TestQuotaEnforced writes past the refquota through the mountpoint.
func TestQuotaEnforced(t *testing.T) {
	p := newPool(t)
	v := mustCreate(t, p, zfs.VolumeSpec{Name: "small", Capacity: 2 * mib})
	f, err := os.Create(filepath.Join(v.Mountpoint, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	var werr error
	for i := 0; i < 40 && werr == nil; i++ { // up to 10 MiB
		_, werr = f.Write(buf)
		if werr == nil {
			werr = f.Sync()
		}
	}
	if !errors.Is(werr, syscall.EDQUOT) {
		t.Fatalf("writing 10 MiB into a 2 MiB volume: %v, want EDQUOT", werr)
	}
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
