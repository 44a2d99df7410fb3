//go:build integration

package zfs_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs"
)

// userSnaps lists ds's user snapshots, by the test's own zfs.
func userSnaps(t *testing.T, ds string) []string {
	t.Helper()
	var out []string
	for _, n := range zfsNames(t, ds) {
		if _, s, ok := strings.Cut(n, "@"); ok && !strings.HasPrefix(s, zfs.ReplSnapPrefix) {
			out = append(out, s)
		}
	}
	return out
}

// replStep takes a replication snapshot of src's volume and streams it
// from base, with the user snapshot list a sender puts in the header.
func replStep(t *testing.T, src, dst *zfs.Pool, v *zfs.Volume, base string) string {
	t.Helper()
	c := ctx(t)
	snap, _, err := src.ReplSnapshot(c, v.Name)
	if err != nil {
		t.Fatal(err)
	}
	spec := zfs.ReplicaSpecOf(v, src.Name(), snap, base)
	if spec.UserSnapshots, err = src.UserSnapshotsOf(c, v.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := streamSpec(t, src, dst, spec); err != nil {
		t.Fatalf("stream %s (base %q): %v", snap, base, err)
	}
	if err := src.ReplicationSent(c, v.Name, snap, nil); err != nil {
		t.Fatal(err)
	}
	return snap
}

// User snapshots follow the replica: one taken between two steps arrives
// (with its group), one deleted on the primary goes at the next step, a
// full stream of a new replica carries those taken before it, and a
// promoted replica serves them: listed, and a clone of one has its data.
func TestReplicaUserSnapshots(t *testing.T) {
	a, b := replPools(t)
	c := ctx(t)
	v := mustCreate(t, a, zfs.VolumeSpec{Name: "v", Capacity: 64 * mib})
	rds := replicaDS(b, "v")
	writeRandom(t, v.Mountpoint, "one", 256<<10)
	s1 := replStep(t, a, b, v, "")

	writeRandom(t, v.Mountpoint, "two", 256<<10)
	mustSnapshot(t, a, "v", "keep")
	testenv.Zfs(t, "set", "dots:group=g1", v.Dataset+"@keep")
	keepSums := sums(t, v.Mountpoint)
	writeRandom(t, v.Mountpoint, "three", 256<<10)
	mustSnapshot(t, a, "v", "gone")
	s2 := replStep(t, a, b, v, s1)
	if got := userSnaps(t, rds); !slices.Equal(got, []string{"keep", "gone"}) {
		t.Fatalf("replica's user snapshots after an increment = %v, want [keep gone]", got)
	}
	if g := zfsGet(t, "dots:group", rds+"@keep"); g != "g1" {
		t.Errorf("replica's keep has dots:group %q, want g1", g)
	}
	wantSums(t, "replica's keep", snapSums(t, b, rds+"@keep"), keepSums)

	// Deleted on the primary: gone from the replica at the next step.
	if err := a.DeleteSnapshot(c, "gone"); err != nil {
		t.Fatal(err)
	}
	s3 := replStep(t, a, b, v, s2)
	if got := userSnaps(t, rds); !slices.Equal(got, []string{"keep"}) {
		t.Fatalf("replica's user snapshots after a delete on the primary = %v, want [keep]", got)
	}
	// A header without a list (an older sender) destroys none.
	mustSnapshot(t, a, "v", "later")
	if err := a.DeleteSnapshot(c, "keep"); err != nil {
		t.Fatal(err)
	}
	s4, _, _ := a.ReplSnapshot(c, "v")
	mustStream(t, a, b, v, s3, s4)
	if got := userSnaps(t, rds); !slices.Equal(got, []string{"keep", "later"}) {
		t.Fatalf("replica's user snapshots after an unlisted stream = %v, want [keep later]", got)
	}
	if _, err := a.CreateSnapshot(c, "v", "keep"); err != nil {
		t.Fatal(err)
	}

	// A new replica's full stream carries every user snapshot, and none
	// of the primary's own settings a replica must not have.
	if err := b.DropReplica(c, "v"); err != nil {
		t.Fatal(err)
	}
	replStep(t, a, b, v, "")
	if got := userSnaps(t, rds); !slices.Equal(got, []string{"later", "keep"}) {
		t.Fatalf("replica's user snapshots after a full stream = %v, want [later keep]", got)
	}
	if id := zfsGet(t, "dots:exportid", rds); id != "-" {
		t.Errorf("a replica received whole has dots:exportid %q", id)
	}

	// A clone's first stream is plain (a -R stream would need its origin
	// on the replica); a user snapshot taken after it arrives.
	cl := mustCreate(t, a, zfs.VolumeSpec{Name: "cl", Capacity: 64 * mib, Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "later"}})
	c1 := replStep(t, a, b, cl, "")
	mustSnapshot(t, a, "cl", "cl-snap")
	replStep(t, a, b, cl, c1)
	if got := userSnaps(t, replicaDS(b, "cl")); !slices.Equal(got, []string{"cl-snap"}) {
		t.Fatalf("a clone's replica's user snapshots = %v, want [cl-snap]", got)
	}

	// Promoted: b lists the snapshots of v and clones from them.
	pv, err := b.PromoteReplica(c, "v", 2, "", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.GetSnapshot(c, "later")
	if err != nil || s.SourceVolume != "v" || s.Dataset != pv.Dataset+"@later" {
		t.Fatalf("promoted primary's GetSnapshot(later) = %+v, %v", s, err)
	}
	all, _ := b.ListSnapshots(c)
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"keep", "later"}) {
		t.Errorf("promoted primary lists snapshots %v, want [keep later]", names)
	}
	wantSums(t, "promoted primary's later", snapSums(t, b, pv.Dataset+"@later"), sums(t, v.Mountpoint))
	clone := mustCreate(t, b, zfs.VolumeSpec{Name: "clone", Capacity: 64 * mib,
		Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "later"}})
	wantSums(t, "clone of later on the promoted primary", sums(t, clone.Mountpoint), sums(t, v.Mountpoint))
	if st, err := b.ReplicaState(c, "v"); err != nil || st.Role != api.RolePrimary {
		t.Errorf("state of the promoted copy = %+v, %v", st, err)
	}
}
