//go:build integration

package zfs_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dots-csi/dots/pkg/zfs"
)

func TestSnapshotAndClones(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	src := mustCreate(t, p, zfs.VolumeSpec{Name: "src", Capacity: 20 * mib})
	writeFile(t, src, "data", "v1")

	s := mustSnapshot(t, p, "src", "snap-1")
	if s.SourceVolume != "src" || s.Dataset != src.Dataset+"@snap-1" || s.Size == 0 || s.CreatedAt.IsZero() {
		t.Errorf("snapshot = %+v", s)
	}
	writeFile(t, src, "data", "v2")

	// Snapshot names are unique in the pool, whatever the volume.
	other := mustCreate(t, p, zfs.VolumeSpec{Name: "other", Capacity: 20 * mib})
	dup, err := p.CreateSnapshot(c, other.Name, "snap-1")
	wantErr(t, err, zfs.ErrExists)
	if dup == nil || dup.SourceVolume != "src" {
		t.Errorf("existing snapshot returned = %+v", dup)
	}
	_, err = p.CreateSnapshot(c, "missing", "snap-2")
	wantErr(t, err, zfs.ErrNotFound)
	if _, err := p.GetSnapshot(c, "snap-1"); err != nil {
		t.Fatal(err)
	}
	_, err = p.GetSnapshot(c, "snap-x")
	wantErr(t, err, zfs.ErrNotFound)

	// Restore from the snapshot: its data, not the volume's current one.
	fromSnap := mustCreate(t, p, zfs.VolumeSpec{Name: "from-snap", Capacity: 30 * mib,
		Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "snap-1"}})
	if got := readFile(t, fromSnap, "data"); got != "v1" {
		t.Errorf("clone of snapshot reads %q, want v1", got)
	}
	if fromSnap.Capacity != 30*mib || zfsGet(t, "refquota", fromSnap.Dataset) != "31457280" {
		t.Errorf("clone capacity = %d", fromSnap.Capacity)
	}
	if fromSnap.Source != (zfs.Source{Kind: zfs.SourceSnapshot, Name: "snap-1"}) {
		t.Errorf("source = %+v", fromSnap.Source)
	}

	// Clone of a live volume: current data, an internal snapshot nobody sees.
	fromVol := mustCreate(t, p, zfs.VolumeSpec{Name: "from-vol", Capacity: 20 * mib,
		Source: zfs.Source{Kind: zfs.SourceVolume, Name: "src"}})
	if got := readFile(t, fromVol, "data"); got != "v2" {
		t.Errorf("clone of volume reads %q, want v2", got)
	}
	if names := snapshotNames(t, p); !slices.Equal(names, []string{"snap-1"}) {
		t.Errorf("ListSnapshots = %v, want only the user's", names)
	}
	internal := internalSnapshots(t, p)
	if len(internal) != 1 || zfsGet(t, "defer_destroy", internal[0]) != "on" {
		t.Fatalf("internal snapshots = %v, want one marked defer_destroy", internal)
	}
	// Deleting the clone takes the internal snapshot with it.
	if err := p.DeleteVolume(c, "from-vol"); err != nil {
		t.Fatal(err)
	}
	if internal := internalSnapshots(t, p); len(internal) != 0 {
		t.Errorf("internal snapshots left after deleting the clone: %v", internal)
	}

	// A clone may not be smaller than its source.
	_, err = p.CreateVolume(c, zfs.VolumeSpec{Name: "small", Capacity: 10 * mib,
		Source: zfs.Source{Kind: zfs.SourceVolume, Name: "src"}})
	wantErr(t, err, zfs.ErrTooSmall)
	_, err = p.CreateVolume(c, zfs.VolumeSpec{Name: "nosrc", Capacity: 10 * mib,
		Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "nope"}})
	wantErr(t, err, zfs.ErrNotFound)
	_, err = p.CreateVolume(c, zfs.VolumeSpec{Name: "nosrc", Capacity: 10 * mib,
		Source: zfs.Source{Kind: zfs.SourceVolume, Name: "nope"}})
	wantErr(t, err, zfs.ErrNotFound)
}

// TestDeleteVolumeWithSnapshot: the volume goes, its snapshot stays usable,
// and the trashed dataset is reaped with its last snapshot.
func TestDeleteVolumeWithSnapshot(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	v := mustCreate(t, p, zfs.VolumeSpec{Name: "doomed", Capacity: 20 * mib})
	writeFile(t, v, "data", "keep me")
	mustSnapshot(t, p, "doomed", "last-words")

	if err := p.DeleteVolume(c, "doomed"); err != nil {
		t.Fatal(err)
	}
	if names := volumeNames(t, p); len(names) != 0 {
		t.Errorf("ListVolumes = %v, want none", names)
	}
	_, err := p.GetVolume(c, "doomed")
	wantErr(t, err, zfs.ErrNotFound)
	s, err := p.GetSnapshot(c, "last-words")
	if err != nil || s.SourceVolume != "doomed" || !strings.Contains(s.Dataset, "/dots/trash/") {
		t.Fatalf("snapshot of trashed volume = %+v, %v", s, err)
	}
	if names := snapshotNames(t, p); !slices.Equal(names, []string{"last-words"}) {
		t.Errorf("ListSnapshots = %v, want the trashed volume's snapshot", names)
	}
	if zfsGet(t, "mounted", strings.Split(s.Dataset, "@")[0]) != "no" {
		t.Errorf("trashed dataset is mounted")
	}
	// The name is free again; a new volume of that name is independent.
	again := mustCreate(t, p, zfs.VolumeSpec{Name: "doomed", Capacity: 20 * mib})
	if again.ExportID == v.ExportID {
		t.Errorf("export id %d reused while the trashed dataset carries it", v.ExportID)
	}
	restored := mustCreate(t, p, zfs.VolumeSpec{Name: "restored", Capacity: 20 * mib,
		Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "last-words"}})
	if got := readFile(t, restored, "data"); got != "keep me" {
		t.Errorf("restore reads %q", got)
	}

	// The snapshot has a clone: deleting it hides it, the clone still reads.
	if err := p.DeleteSnapshot(c, "last-words"); err != nil {
		t.Fatal(err)
	}
	if names := snapshotNames(t, p); len(names) != 0 {
		t.Errorf("ListSnapshots = %v, want none", names)
	}
	wantErr(t, p.DeleteSnapshot(c, "last-words"), zfs.ErrNotFound)
	if got := readFile(t, restored, "data"); got != "keep me" {
		t.Errorf("clone reads %q after its snapshot was deleted", got)
	}
	if n := trashed(t, p); len(n) == 0 {
		t.Errorf("trash emptied while a clone still depends on it")
	}
	// Deleting the last clone removes everything that was left.
	if err := p.DeleteVolume(c, "restored"); err != nil {
		t.Fatal(err)
	}
	if n := trashed(t, p); len(n) != 0 {
		t.Errorf("left in trash: %v", n)
	}
	if names := volumeNames(t, p); !slices.Equal(names, []string{"doomed"}) {
		t.Errorf("ListVolumes = %v", names)
	}
}

// TestDeleteSnapshotReapsTrash: deleting the last snapshot of a trashed
// volume (no clones) destroys the trashed dataset.
func TestDeleteSnapshotReapsTrash(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	mustCreate(t, p, zfs.VolumeSpec{Name: "v", Capacity: 10 * mib})
	mustSnapshot(t, p, "v", "s1")
	mustSnapshot(t, p, "v", "s2")
	if err := p.DeleteVolume(c, "v"); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteSnapshot(c, "s1"); err != nil {
		t.Fatal(err)
	}
	if n := trashed(t, p); len(n) != 2 { // the dataset and s2
		t.Errorf("trash = %v, want the dataset and s2", n)
	}
	if err := p.DeleteSnapshot(c, "s2"); err != nil {
		t.Fatal(err)
	}
	if n := trashed(t, p); len(n) != 0 {
		t.Errorf("trash = %v, want empty", n)
	}
}

// TestDeleteSnapshotWithCloneOfLiveVolume: the snapshot is hidden in place
// (deferred destroy), its clone keeps working, its name is refused with
// ErrBusy while the clone lives, and both go with the clone.
func TestDeleteSnapshotWithCloneOfLiveVolume(t *testing.T) {
	p := newPool(t)
	c := ctx(t)
	v := mustCreate(t, p, zfs.VolumeSpec{Name: "v", Capacity: 10 * mib})
	writeFile(t, v, "f", "one")
	mustSnapshot(t, p, "v", "s")
	cl := mustCreate(t, p, zfs.VolumeSpec{Name: "cl", Capacity: 10 * mib,
		Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "s"}})
	if err := p.DeleteSnapshot(c, "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetSnapshot(c, "s"); !errors.Is(err, zfs.ErrNotFound) {
		t.Errorf("deleted snapshot still visible: %v", err)
	}
	if list, _ := p.ListSnapshots(c); len(list) != 0 {
		t.Errorf("ListSnapshots = %v, want none", list)
	}
	_, err := p.CreateSnapshot(c, "v", "s")
	wantErr(t, err, zfs.ErrBusy)
	writeFile(t, v, "f", "two")
	if got := readFile(t, cl, "f"); got != "one" {
		t.Errorf("clone reads %q", got)
	}
	if err := p.DeleteVolume(c, "cl"); err != nil {
		t.Fatal(err)
	}
	for _, n := range zfsNames(t, p.Name()+"/dots") {
		if strings.Contains(n, "@") {
			t.Errorf("snapshot left after its clone went: %s", n)
		}
	}
	if s2 := mustSnapshot(t, p, "v", "s"); s2.Dataset != v.Dataset+"@s" {
		t.Errorf("new snapshot = %+v", s2)
	}
}

// internalSnapshots lists snapshots whose name starts with "_".
func internalSnapshots(t testing.TB, p *zfs.Pool) []string {
	var out []string
	for _, n := range zfsNames(t, p.Name()+"/dots") {
		if strings.Contains(n, "@_") {
			out = append(out, n)
		}
	}
	return out
}

// trashed lists datasets and snapshots under the trash.
// trashed reaps (deletes leave that to the pool's maintenance, which no
// test runs) and lists what is left in the trash.
func trashed(t testing.TB, p *zfs.Pool) []string {
	t.Helper()
	if err := p.Reap(ctx(t)); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	root := p.Name() + "/dots/trash"
	var out []string
	for _, n := range zfsNames(t, root) {
		if n != root {
			out = append(out, n)
		}
	}
	return out
}
