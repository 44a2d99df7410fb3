//go:build integration

package zfs_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/zfs"
)

func realZFS(t testing.TB, args ...string) {
	t.Helper()
	testenv.Zfs(t, args...)
}

// TestOpenRecovers: leftovers of a crash in the middle of a clone or a
// snapshot delete (internal snapshots not yet deferred, trash without
// snapshots) are cleaned up by the next Open; user data is not touched.
func TestOpenRecovers(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	v := mustCreate(t, p, zfs.VolumeSpec{Name: "v", Capacity: 10 * mib})
	mustSnapshot(t, p, "v", "keep")
	realZFS(t, "snapshot", v.Dataset+"@_vc-crashed")
	realZFS(t, "snapshot", v.Dataset+"@_del-crashed")
	// An internal snapshot that a clone still uses must survive (deferred).
	realZFS(t, "snapshot", v.Dataset+"@_vc-inuse")
	realZFS(t, "clone", v.Dataset+"@_vc-inuse", p.Name()+"/dots/volumes/orphan-clone")
	trash := p.Name() + "/dots/trash"
	realZFS(t, "create", trash+"/left_99")

	p2, err := zfs.Open(c, reopenConfig(t, p))
	if err != nil {
		t.Fatal(err)
	}
	all := zfsNames(t, p.Name()+"/dots")
	for _, gone := range []string{v.Dataset + "@_vc-crashed", v.Dataset + "@_del-crashed", trash + "/left_99"} {
		if slices.Contains(all, gone) {
			t.Errorf("%s survived recovery", gone)
		}
	}
	if !slices.Contains(all, v.Dataset+"@_vc-inuse") || zfsGet(t, "defer_destroy", v.Dataset+"@_vc-inuse") != "on" {
		t.Errorf("internal snapshot with a clone: want kept and deferred; have %v", all)
	}
	if names := snapshotNames(t, p2); !slices.Equal(names, []string{"keep"}) {
		t.Errorf("user snapshots = %v", names)
	}
}

// TestDeleteCloneSource: a volume whose clone still depends on it goes to
// the trash; deleting the clone then removes everything.
func TestDeleteCloneSource(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	src := mustCreate(t, p, zfs.VolumeSpec{Name: "src", Capacity: 10 * mib})
	writeFile(t, src, "f", "from source")
	cl := mustCreate(t, p, zfs.VolumeSpec{Name: "cl", Capacity: 10 * mib, Source: zfs.Source{Kind: zfs.SourceVolume, Name: "src"}})
	if err := p.DeleteVolume(c, "src"); err != nil {
		t.Fatal(err)
	}
	if names := volumeNames(t, p); !slices.Equal(names, []string{"cl"}) {
		t.Errorf("volumes = %v", names)
	}
	// zfs-fuse may keep it in place (marked, unmounted) while the clone
	// is mounted; either way the dataset must still exist.
	if len(trashed(t, p)) == 0 && !slices.Contains(zfsNames(t, p.Name()+"/dots/volumes"), src.Dataset) {
		t.Fatal("source destroyed although its clone depends on it")
	}
	if slices.Contains(zfsNames(t, p.Name()+"/dots/volumes"), src.Dataset) &&
		(zfsGet(t, "mounted", src.Dataset) != "no" || zfsGet(t, "canmount", src.Dataset) != "off") {
		t.Error("deleted source kept in place is mountable")
	}
	if got := readFile(t, cl, "f"); got != "from source" {
		t.Errorf("clone reads %q", got)
	}
	// The name again, while the clone is mounted: zfs-fuse may be unable to
	// move the old dataset out of the way (ErrBusy, nothing created), or
	// manage it (a new, independent volume).
	again, err := p.CreateVolume(c, zfs.VolumeSpec{Name: "src", Capacity: 10 * mib})
	switch {
	case errors.Is(err, zfs.ErrBusy):
		if names := volumeNames(t, p); !slices.Equal(names, []string{"cl"}) {
			t.Errorf("volumes after ErrBusy = %v", names)
		}
	case err != nil:
		t.Fatalf("CreateVolume(src) again: %v", err)
	default:
		if again.ExportID == src.ExportID {
			t.Errorf("new volume reuses export id %d", src.ExportID)
		}
		if err := p.DeleteVolume(c, "src"); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.DeleteVolume(c, "cl"); err != nil {
		t.Fatal(err)
	}
	if left := trashed(t, p); len(left) != 0 {
		t.Errorf("left in trash: %v", left)
	}
	if all := zfsNames(t, p.Name()+"/dots/volumes"); len(all) != 1 {
		t.Errorf("left in volumes: %v", all)
	}
	// Everything is gone: the name is free.
	mustCreate(t, p, zfs.VolumeSpec{Name: "src", Capacity: 10 * mib})
}

func TestConcurrent(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	ids := make([]uint32, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := p.CreateVolume(c, zfs.VolumeSpec{Name: fmt.Sprintf("v%d", i), Capacity: mib})
			if err == nil {
				ids[i] = v.ExportID
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create v%d: %v", i, err)
		}
		if seen[ids[i]] {
			t.Errorf("export id %d handed out twice", ids[i])
		}
		seen[ids[i]] = true
	}
	// The same snapshot name on every volume at once: exactly one wins.
	var mu sync.Mutex
	won, exists := 0, 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.CreateSnapshot(c, fmt.Sprintf("v%d", i), "same")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, zfs.ErrExists):
				exists++
			default:
				t.Errorf("CreateSnapshot: %v", err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || exists != n-1 {
		t.Errorf("%d created, %d ErrExists; want 1 and %d", won, exists, n-1)
	}
}

// BenchmarkCreateVolume measures one CreateVolume on zfs-fuse, with the
// pool holding a growing number of volumes.
func BenchmarkCreateVolume(b *testing.B) {
	p := newPool(b)
	c := ctx(b)
	i := 0
	for b.Loop() {
		if _, err := p.CreateVolume(c, zfs.VolumeSpec{Name: fmt.Sprintf("bench-%d", i), Capacity: mib}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestTrashInPlace: when the move into the trash fails (here: a dataset
// made by hand holds the destination; on zfs-fuse: mounted clones), the
// deleted volume waits in place, invisible, its snapshots usable; its name
// is refused with ErrBusy until it can move; a reopen remembers it.
func TestTrashInPlace(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	v := mustCreate(t, p, zfs.VolumeSpec{Name: "v", Capacity: 10 * mib})
	writeFile(t, v, "f", "kept")
	mustSnapshot(t, p, "v", "s")
	blocker := fmt.Sprintf("%s/dots/trash/v_%d", p.Name(), v.ExportID)
	realZFS(t, "create", blocker)
	realZFS(t, "snapshot", blocker+"@_block") // or Reap would remove it

	if err := p.DeleteVolume(c, "v"); err != nil {
		t.Fatal(err)
	}
	if names := volumeNames(t, p); len(names) != 0 {
		t.Errorf("volumes = %v", names)
	}
	_, err := p.GetVolume(c, "v")
	wantErr(t, err, zfs.ErrNotFound)
	wantErr(t, p.DeleteVolume(c, "v"), zfs.ErrNotFound)
	_, err = p.CreateSnapshot(c, "v", "s2")
	wantErr(t, err, zfs.ErrNotFound)
	if zfsGet(t, "mounted", v.Dataset) != "no" || zfsGet(t, "canmount", v.Dataset) != "off" {
		t.Error("deleted volume kept in place is mountable")
	}
	if names := snapshotNames(t, p); !slices.Equal(names, []string{"s"}) {
		t.Errorf("snapshots = %v", names)
	}
	r := mustCreate(t, p, zfs.VolumeSpec{Name: "r", Capacity: 10 * mib, Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "s"}})
	if readFile(t, r, "f") != "kept" {
		t.Error("restore from a volume kept in place")
	}
	_, err = p.CreateVolume(c, zfs.VolumeSpec{Name: "v", Capacity: 10 * mib})
	wantErr(t, err, zfs.ErrBusy)

	// Reopen: the new process knows the waiting dataset; with the way
	// clear (and no mounted clone, which zfs-fuse would call busy), the
	// name can be used again.
	if err := p.DeleteVolume(c, "r"); err != nil {
		t.Fatal(err)
	}
	realZFS(t, "destroy", "-r", blocker)
	p2, err := zfs.Open(c, reopenConfig(t, p))
	if err != nil {
		t.Fatal(err)
	}
	nv := mustCreate(t, p2, zfs.VolumeSpec{Name: "v", Capacity: 10 * mib})
	if nv.ExportID == v.ExportID {
		t.Error("export id reused")
	}
	if names := volumeNames(t, p2); !slices.Equal(names, []string{"v"}) {
		t.Errorf("volumes = %v", names)
	}
	if names := snapshotNames(t, p2); !slices.Equal(names, []string{"s"}) {
		t.Errorf("snapshots = %v", names)
	}
	// Last snapshot gone: everything is reaped.
	if err := p2.DeleteSnapshot(c, "s"); err != nil {
		t.Fatal(err)
	}
	if left := trashed(t, p2); len(left) != 0 {
		t.Errorf("left in trash: %v", left)
	}
	if all := zfsNames(t, p.Name()+"/dots/volumes"); !slices.Equal(all, []string{p.Name() + "/dots/volumes", nv.Dataset}) {
		t.Errorf("volumes datasets: %v", all)
	}
}

// BenchmarkListVolumes lists a pool of 100 volumes (made with plain zfs
// create and dots' properties, which is faster to set up).
func BenchmarkListVolumes(b *testing.B) {
	p := newPool(b)
	c := ctx(b)
	const n = 100
	for i := range n {
		name := fmt.Sprintf("v%03d", i)
		realZFS(b, "create", "-o", "dots:name="+name, "-o", "refquota=1048576", "-o", fmt.Sprintf("dots:exportid=%d", 1000+i),
			p.Name()+"/dots/volumes/"+name)
	}
	for b.Loop() {
		vs, err := p.ListVolumes(c)
		if err != nil || len(vs) != n {
			b.Fatalf("ListVolumes: %d, %v", len(vs), err)
		}
	}
}
