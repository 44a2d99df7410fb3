package zfs

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
)

func vol(name string, capacity int64) *Volume {
	return &Volume{Name: name, Dataset: "p/dots/volumes/" + name, Capacity: capacity, Properties: map[string]string{}}
}

func snap(name, volume string) *Snapshot {
	return &Snapshot{Name: name, SourceVolume: volume, Dataset: "p/dots/volumes/" + volume + "@" + name}
}

func volNames(vs []*Volume) []string {
	out := []string{}
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func snapNames(ss []*Snapshot) []string {
	out := []string{}
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

func TestIndexVolumes(t *testing.T) {
	x := newIndex()
	for i, n := range []string{"m", "c", "x", "a", "k"} {
		x.putVolume(vol(n, int64(i+1)))
	}
	x.putVolume(vol("c", 10)) // replaced, not added
	x.dropVolume("x")
	x.dropVolume("nope")
	if got := x.counts(); got != (Counts{Volumes: 4, Provisioned: 1 + 10 + 4 + 5}) {
		t.Errorf("counts = %+v", got)
	}
	all, more := x.volumePage("", 0)
	if !slices.Equal(volNames(all), []string{"a", "c", "k", "m"}) || more {
		t.Errorf("all = %v, %v", volNames(all), more)
	}
	// Callers get copies: changing one changes nothing inside.
	all[0].Properties["compression"] = "on"
	all[0].Capacity = 99
	if v, _ := x.volume("a"); v.Capacity != 4 || len(v.Properties) != 0 {
		t.Errorf("the index shares its entries: %+v", v)
	}
	// Pages resume after the key of the last one, also when it is gone.
	p1, more := x.volumePage("", 2)
	if !slices.Equal(volNames(p1), []string{"a", "c"}) || !more {
		t.Fatalf("page 1 = %v, %v", volNames(p1), more)
	}
	x.dropVolume("c")
	p2, more := x.volumePage("c", 2)
	if !slices.Equal(volNames(p2), []string{"k", "m"}) || more {
		t.Errorf("page 2 = %v, %v", volNames(p2), more)
	}
	if v, ok := x.updateVolume("k", func(v *Volume) { v.Capacity = 50; v.Mounted = true }); !ok || v.Capacity != 50 {
		t.Errorf("updateVolume = %+v, %v", v, ok)
	}
	if _, ok := x.updateVolume("gone", func(*Volume) {}); ok {
		t.Error("updateVolume of a missing volume")
	}
	if got := x.counts().Provisioned; got != 4+50+1 {
		t.Errorf("provisioned after update = %d", got)
	}
}

func TestIndexSnapshots(t *testing.T) {
	x := newIndex()
	for _, s := range []*Snapshot{snap("s3", "b"), snap("s1", "a"), snap("s2", "b"), snap("s4", "a"), snap("s5", "b")} {
		x.putSnapshot(s)
	}
	// A filtered listing in pages of one: each of b's snapshots once.
	var got []string
	after := ""
	for range 10 {
		page, more := x.snapshotPage(after, 1, "b")
		got = append(got, snapNames(page)...)
		if !more {
			break
		}
		after = page[len(page)-1].Name
	}
	if !slices.Equal(got, []string{"s2", "s3", "s5"}) {
		t.Errorf("b's snapshots in pages = %v", got)
	}
	// Moved into the trash with its volume: the full name follows.
	x.moveDataset("p/dots/volumes/a", "p/dots/trash/a_7")
	if s, _ := x.snapshot("s1"); s.Dataset != "p/dots/trash/a_7@s1" || s.SourceVolume != "a" {
		t.Errorf("moved snapshot = %+v", s)
	}
	if s, _ := x.snapshot("s2"); s.Dataset != "p/dots/volumes/b@s2" {
		t.Errorf("another volume's snapshot moved: %+v", s)
	}
	x.dropSnapshot("s1")
	if _, ok := x.snapshot("s1"); ok || x.counts().Snapshots != 4 {
		t.Errorf("dropped snapshot still there (%d)", x.counts().Snapshots)
	}
}

// TestIndexReload: a reload adopts the pool's state and says what
// differed, except for entries the pool's own operations changed while it
// listed (its listing may predate them), and space, which changes by
// itself.
func TestIndexReload(t *testing.T) {
	x := newIndex()
	x.putVolume(vol("same", 1))
	x.putVolume(vol("changed", 1))
	x.putVolume(vol("gone", 1))
	x.putVolume(vol("busy", 1))
	x.putSnapshot(snap("s-same", "same"))
	x.putSnapshot(snap("s-gone", "same"))

	x.beginReload()
	// While it lists: a create and a delete of the server's own.
	x.putVolume(vol("new-mine", 1))
	x.dropVolume("busy")

	used := vol("same", 1)
	used.Used, used.Available = 12345, 99
	changed := vol("changed", 1)
	changed.Capacity = 2
	d := x.endReload(
		[]*Volume{used, changed, vol("by-hand", 3), vol("busy", 1)},
		[]*Snapshot{snap("s-same", "same"), snap("s-new", "by-hand")})

	want := IndexDiff{VolumesAdded: []string{"by-hand"}, VolumesRemoved: []string{"gone"}, VolumesChanged: []string{"changed"},
		SnapshotsAdded: []string{"s-new"}, SnapshotsRemoved: []string{"s-gone"}}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("diff = %+v\nwant %+v", d, want)
	}
	all, _ := x.volumePage("", 0)
	if got := volNames(all); !slices.Equal(got, []string{"by-hand", "changed", "new-mine", "same"}) {
		t.Errorf("volumes after reload = %v", got)
	}
	if v, _ := x.volume("changed"); v.Capacity != 2 {
		t.Errorf("changed volume not adopted: %+v", v)
	}
	if v, _ := x.volume("same"); v.Used != 12345 {
		t.Errorf("space not taken from the listing: %+v", v)
	}
	if got := x.counts(); got != (Counts{Volumes: 4, Snapshots: 2, Provisioned: 3 + 2 + 1 + 1}) {
		t.Errorf("counts after reload = %+v", got)
	}
	// A second reload of the same state finds nothing.
	x.beginReload()
	all, _ = x.volumePage("", 0)
	snaps, _ := x.snapshotPage("", 0, "")
	if d := x.endReload(all, snaps); !d.Empty() {
		t.Errorf("reload of the same state = %+v", d)
	}
}

// TestIndexConcurrent: readers and writers at once (run with -race).
func TestIndexConcurrent(t *testing.T) {
	x := newIndex()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				n := fmt.Sprintf("w%d-%03d", w, i)
				x.putVolume(vol(n, 1))
				x.putSnapshot(snap("s-"+n, n))
				if i%2 == 0 {
					x.dropVolume(n)
				}
			}
		})
		wg.Go(func() {
			for range 200 {
				x.volumePage("w1", 10)
				x.snapshotPage("", 5, "")
				x.counts()
			}
		})
	}
	wg.Wait()
	if c := x.counts(); c.Volumes != 400 || c.Snapshots != 800 || c.Provisioned != 400 {
		t.Errorf("counts = %+v", c)
	}
}
