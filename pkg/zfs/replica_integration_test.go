//go:build integration

package zfs_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs"
)

// Two pools on one machine stand for two servers; streams go through an
// io.Pipe as they would through the replication service. Shown on
// zfs-fuse (pool version 23).

const replPrefix = "dotsrz"

func replPools(t *testing.T) (*zfs.Pool, *zfs.Pool) {
	return testenv.NewPool(t, replPrefix, gib), testenv.NewPool(t, replPrefix, gib)
}

// stream sends volume's snap (from base) from src into dst's replica.
func stream(t *testing.T, src, dst *zfs.Pool, v *zfs.Volume, base, snap string) (api.VolumeState, error) {
	t.Helper()
	return streamSpec(t, src, dst, zfs.ReplicaSpecOf(v, src.Name(), snap, base))
}

// streamSpec sends spec's stream from src into dst's replica.
func streamSpec(t *testing.T, src, dst *zfs.Pool, spec zfs.ReceiveSpec) (api.VolumeState, error) {
	t.Helper()
	c := ctx(t)
	base, snap := spec.Base, spec.Snapshot
	pr, pw := io.Pipe()
	sent := make(chan error, 1)
	go func() {
		err := src.Send(c, spec.Volume, base, snap, pw)
		pw.CloseWithError(err)
		sent <- err
	}()
	st, err := dst.Receive(c, spec, pr)
	pr.CloseWithError(errors.New("receiver done"))
	serr := <-sent
	if err == nil && serr != nil {
		t.Fatalf("send %s (base %q): %v", snap, base, serr)
	}
	return st, err
}

func mustStream(t *testing.T, src, dst *zfs.Pool, v *zfs.Volume, base, snap string) api.VolumeState {
	t.Helper()
	st, err := stream(t, src, dst, v, base, snap)
	if err != nil {
		t.Fatalf("receive %s (base %q): %v", snap, base, err)
	}
	return st
}

func writeRandom(t *testing.T, dir, name string, n int) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sums maps every regular file below dir to its SHA-256.
func sums(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, path)
		out[rel] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// snapSums reads what a snapshot holds through a temporary clone mounted
// by the test's own zfs (replicas never mount).
func snapSums(t *testing.T, p *zfs.Pool, snapshot string) map[string]string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	clone := p.Name() + "/check-" + hex.EncodeToString(b)
	dir := filepath.Join(t.TempDir(), "check")
	testenv.Zfs(t, "clone", "-o", "mountpoint="+dir, snapshot, clone)
	defer func() {
		if err := zfs.DestroyRetrying(ctx(t), testenv.Runner(t), clone); err != nil {
			t.Errorf("destroy %s: %v", clone, err)
		}
	}()
	return sums(t, dir)
}

func replicaDS(p *zfs.Pool, volume string) string { return p.Name() + "/dots/replicas/" + volume }

// replSnaps lists ds's replication snapshots, by the test's own zfs.
func replSnaps(t *testing.T, ds string) []string {
	t.Helper()
	var out []string
	for _, n := range zfsNames(t, ds) {
		if _, s, ok := strings.Cut(n, "@"); ok && strings.HasPrefix(s, zfs.ReplSnapPrefix) {
			out = append(out, s)
		}
	}
	return out
}

func wantSums(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(want) == 0 || !maps.Equal(got, want) {
		t.Fatalf("%s: files %v, want %v", what, got, want)
	}
}

func TestReplicaStreams(t *testing.T) {
	a, b := replPools(t)
	c := ctx(t)
	v := mustCreate(t, a, zfs.VolumeSpec{Name: "v", Capacity: 64 * mib, Properties: map[string]string{"compression": "gzip"},
		Access: &api.Access{Squash: api.SquashAll, AnonUID: 1000, AnonGID: 1001}})
	writeRandom(t, v.Mountpoint, "one", 1<<20)
	mustSnapshot(t, a, "v", "user-1")
	_, err := a.CreateSnapshot(c, "v", "dots-repl-1")
	wantErr(t, err, zfs.ErrInvalid)

	// Full stream.
	s1, at1, err := a.ReplSnapshot(c, "v")
	if err != nil {
		t.Fatal(err)
	}
	want1 := sums(t, v.Mountpoint)
	st := mustStream(t, a, b, v, "", s1)
	if err := a.ReplicationSent(c, "v", s1, nil); err != nil {
		t.Fatal(err)
	}
	if st.Latest != s1 || st.Role != api.RoleReplica || st.Generation != 1 || !st.LatestTime.Equal(at1) {
		t.Errorf("state after full stream = %+v", st)
	}
	if got, err := b.ReplicaState(c, "v"); err != nil || got.Latest != s1 || !got.Exists || got.Role != api.RoleReplica {
		t.Errorf("ReplicaState(b) = %+v, %v", got, err)
	}
	if got, _ := a.ReplicaState(c, "v"); got.Role != api.RolePrimary || got.Latest != s1 || got.Generation != 1 {
		t.Errorf("ReplicaState(a) = %+v", got)
	}
	rds := replicaDS(b, "v")
	for prop, want := range map[string]string{"refquota": "67108864", "compression": "gzip", "dots:squash": "all",
		"dots:anon": "1000:1001", "dots:generation": "1", "dots:primary": a.Name(), "mounted": "no", "dots:name": "v"} {
		if got := zfsGet(t, prop, rds); got != want {
			t.Errorf("replica %s = %q, want %q", prop, got, want)
		}
	}
	wantSums(t, "replica at s1", snapSums(t, b, rds+"@"+s1), want1)
	for _, ds := range []string{rds, v.Dataset} {
		if got := zfsGet(t, "userrefs", ds+"@"+s1); got != "1" {
			t.Errorf("holds on %s@%s = %s, want 1", ds, s1, got)
		}
	}
	// Users never see replication snapshots, nor the replica.
	if names := snapshotNames(t, a); !slices.Equal(names, []string{"user-1"}) || a.Counts().Snapshots != 1 {
		t.Errorf("snapshots of a = %v (%d)", names, a.Counts().Snapshots)
	}
	_, err = a.GetSnapshot(c, s1)
	wantErr(t, err, zfs.ErrNotFound)
	if names := volumeNames(t, b); len(names) != 0 {
		t.Errorf("volumes of b = %v", names)
	}
	if names, err := b.ReplicaNames(c); err != nil || !slices.Equal(names, []string{"v"}) {
		t.Errorf("ReplicaNames = %v, %v", names, err)
	}

	// Incremental: the older snapshot goes on both sides, user-1 stays.
	writeRandom(t, v.Mountpoint, "two", 2<<20)
	s2, _, err := a.ReplSnapshot(c, "v")
	if err != nil {
		t.Fatal(err)
	}
	want2 := sums(t, v.Mountpoint)
	mustStream(t, a, b, v, s1, s2)
	if err := a.ReplicationSent(c, "v", s2, nil); err != nil {
		t.Fatal(err)
	}
	if got := replSnaps(t, rds); !slices.Equal(got, []string{s2}) {
		t.Errorf("replica's replication snapshots = %v, want [%s]", got, s2)
	}
	if got := replSnaps(t, v.Dataset); !slices.Equal(got, []string{s2}) {
		t.Errorf("primary's replication snapshots = %v, want [%s]", got, s2)
	}
	if !slices.Contains(zfsNames(t, v.Dataset), v.Dataset+"@user-1") {
		t.Errorf("user snapshot pruned: %v", zfsNames(t, v.Dataset))
	}
	wantSums(t, "replica at s2", snapSums(t, b, rds+"@"+s2), want2)

	// A stream cut mid-way (the receiver's context ends, the connection
	// breaks) leaves the replica at s2; the next send restarts from it.
	writeRandom(t, v.Mountpoint, "three", 8<<20)
	s3, _, err := a.ReplSnapshot(c, "v")
	if err != nil {
		t.Fatal(err)
	}
	want3 := sums(t, v.Mountpoint)
	cut := cutStream(t, a, b, v, s2, s3, 1<<20)
	if cut == nil {
		t.Fatal("a stream cut after 1 MiB was received")
	}
	t.Logf("cut stream: %v", cut)
	if got := replSnaps(t, rds); !slices.Equal(got, []string{s2}) {
		t.Errorf("after the cut stream: replication snapshots %v, want [%s]", got, s2)
	}
	wantSums(t, "replica after the cut stream", snapSums(t, b, rds+"@"+s2), want2)
	if st, _ := b.ReplicaState(c, "v"); st.Latest != s2 {
		t.Errorf("state after the cut stream = %+v", st)
	}
	mustStream(t, a, b, v, s2, s3)
	wantSums(t, "replica at s3", snapSums(t, b, rds+"@"+s3), want3)

	// A retry of an applied stream is answered without receiving.
	if st, err := b.Receive(c, zfs.ReplicaSpecOf(v, a.Name(), s3, s2), strings.NewReader("")); err != nil || st.Latest != s3 {
		t.Errorf("repeated receive = %+v, %v", st, err)
	}
	// The sender keeps what a replica still needs.
	if err := a.ReplicationSent(c, "v", s3, []string{s2}); err != nil {
		t.Fatal(err)
	}
	if got := replSnaps(t, v.Dataset); !slices.Equal(got, []string{s2, s3}) {
		t.Errorf("primary keeps %v, want [%s %s]", got, s2, s3)
	}

	// A volume with only replication snapshots is destroyed, not trashed.
	w := mustCreate(t, a, zfs.VolumeSpec{Name: "w", Capacity: 16 * mib})
	if _, _, err := a.ReplSnapshot(c, "w"); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteVolume(c, "w"); err != nil {
		t.Fatal(err)
	}
	for _, n := range zfsNames(t, a.Name()+"/dots") {
		if strings.Contains(n, "/w") {
			t.Errorf("deleted volume left %s", n)
		}
	}
	_ = w
}

func TestReplicaPromoteDemote(t *testing.T) {
	a, b := replPools(t)
	c := ctx(t)
	v := mustCreate(t, a, zfs.VolumeSpec{Name: "v", Capacity: 64 * mib})
	writeRandom(t, v.Mountpoint, "base", 1<<20)
	mustSnapshot(t, a, "v", "user-old")
	s1, _, _ := a.ReplSnapshot(c, "v")
	mustStream(t, a, b, v, "", s1)
	writeRandom(t, v.Mountpoint, "more", 1<<20)
	s2, _, _ := a.ReplSnapshot(c, "v")
	want2 := sums(t, v.Mountpoint)
	mustStream(t, a, b, v, s1, s2)
	if err := a.ReplicationSent(c, "v", s2, nil); err != nil {
		t.Fatal(err)
	}

	// Refusals: not above the replica's generation; an unknown snapshot.
	_, err := b.PromoteReplica(c, "v", 1, "", nil, 0)
	wantErr(t, err, api.ErrStaleGeneration)
	_, err = b.PromoteReplica(c, "v", 2, zfs.ReplSnapshotName(time.Now()), nil, 0)
	wantErr(t, err, zfs.ErrNotFound)
	if err := b.DropReplica(c, "v"); err != nil {
		t.Fatal(err)
	}
	if st, err := b.ReplicaState(c, "v"); err != nil || st.Exists {
		t.Fatalf("state after DropReplica = %+v, %v", st, err)
	}
	// A full stream makes it again.
	mustStream(t, a, b, v, "", s2)

	// Promote b (a is cut off: split brain).
	peers := []api.Peer{{Server: a.Name(), Address: "a:1"}}
	pv, err := b.PromoteReplica(c, "v", 2, s2, peers, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if pv.Generation != 2 || !slices.Equal(pv.Replicas, peers) || pv.ReplInterval != 5*time.Second || pv.ExportID == 0 ||
		!pv.Mounted || pv.Dataset != b.Name()+"/dots/volumes/v" || pv.Capacity != 64*mib || pv.ReplLatest != s2 {
		t.Errorf("promoted = %+v", pv)
	}
	wantSums(t, "promoted volume", sums(t, pv.Mountpoint), want2)
	if names := volumeNames(t, b); !slices.Equal(names, []string{"v"}) {
		t.Errorf("volumes of b = %v", names)
	}
	if again, err := b.PromoteReplica(c, "v", 2, s2, peers, 5*time.Second); err != nil || again.ExportID != pv.ExportID {
		t.Errorf("repeated promote = %+v, %v", again, err)
	}
	wantErr(t, b.DropReplica(c, "v"), api.ErrNotReplica)
	_, err = b.Receive(c, zfs.ReplicaSpecOf(v, a.Name(), s2, s1), strings.NewReader(""))
	wantErr(t, err, api.ErrNotReplica)
	if st, _ := b.ReplicaState(c, "v"); st.Role != api.RolePrimary || st.Generation != 2 {
		t.Errorf("state of the new primary = %+v", st)
	}

	// Both write: a (stale) and b (the new primary).
	writeFile(t, v, "diverged.txt", "written on the stale primary")
	if _, _, err := a.ReplSnapshot(c, "v"); err != nil {
		t.Fatal(err)
	}
	staleSums := sums(t, v.Mountpoint)
	writeRandom(t, pv.Mountpoint, "new", 1<<20)
	s4, _, _ := b.ReplSnapshot(c, "v")
	want4 := sums(t, pv.Mountpoint)

	// a learns it is stale: demoted, its writes kept aside.
	diverged, err := a.DemoteToReplica(c, "v", b.Name(), 2, true, s2)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(diverged, a.Name()+"/dots/diverged/v-g1-") {
		t.Errorf("diverged dataset = %q", diverged)
	}
	if got, err := a.DivergedCopies(c, "v"); err != nil || !slices.Equal(got, []string{diverged}) {
		t.Errorf("DivergedCopies = %v, %v", got, err)
	}
	var divSnap string
	for _, n := range zfsNames(t, diverged) {
		if _, s, ok := strings.Cut(n, "@"); ok && strings.HasPrefix(s, zfs.DivergedSnapPrefix) {
			divSnap = n
		}
	}
	if divSnap == "" {
		t.Fatalf("no dots-diverged snapshot in %v", zfsNames(t, diverged))
	}
	wantSums(t, "diverged copy", snapSums(t, a, divSnap), staleSums)
	if names := volumeNames(t, a); len(names) != 0 {
		t.Errorf("volumes of a after demotion = %v", names)
	}
	if names := snapshotNames(t, a); len(names) != 0 {
		t.Errorf("snapshots of a after demotion = %v", names)
	}
	if st, _ := a.ReplicaState(c, "v"); st.Role != api.RoleReplica || st.Generation != 2 || st.Latest != s2 {
		t.Errorf("state of the demoted copy = %+v", st)
	}
	// A stream of the old generation is refused now.
	_, err = a.Receive(c, zfs.ReplicaSpecOf(v, b.Name(), s4, s2), strings.NewReader(""))
	wantErr(t, err, api.ErrStaleGeneration)

	// The new primary's increment from the common snapshot applies.
	mustStream(t, b, a, pv, s2, s4)
	wantSums(t, "demoted copy at s4", snapSums(t, a, replicaDS(a, "v")+"@"+s4), want4)
	if err := b.ReplicationSent(c, "v", s4, nil); err != nil {
		t.Fatal(err)
	}

	// Dropping the replica keeps the diverged copy.
	if err := a.DropReplica(c, "v"); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(zfsNames(t, a.Name()+"/dots"), replicaDS(a, "v")) {
		t.Errorf("replica still there after DropReplica")
	}
	wantSums(t, "diverged copy after the drop", snapSums(t, a, divSnap), staleSums)
	if err := a.DropReplica(c, "v"); err != nil {
		t.Errorf("second DropReplica: %v", err)
	}
}

func TestReceiveNewVolume(t *testing.T) {
	a, b := replPools(t)
	c := ctx(t)
	v := mustCreate(t, a, zfs.VolumeSpec{Name: "src", Capacity: 32 * mib})
	writeRandom(t, v.Mountpoint, "data", 2<<20)
	mustSnapshot(t, a, "src", "snap")
	want := sums(t, v.Mountpoint)
	writeRandom(t, v.Mountpoint, "later", 1<<10)

	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(a.SendSnapshot(c, "snap", pw)) }()
	nv, err := b.ReceiveNewVolume(c, zfs.VolumeSpec{Name: "copy", Capacity: 48 * mib,
		Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: "snap"}}, pr)
	pr.Close()
	if err != nil {
		t.Fatal(err)
	}
	if nv.Capacity != 48*mib || nv.ExportID == 0 || !nv.Mounted || nv.Source.Name != "snap" {
		t.Errorf("copy = %+v", nv)
	}
	wantSums(t, "copy", sums(t, nv.Mountpoint), want)
	if names := snapshotNames(t, b); len(names) != 0 {
		t.Errorf("copy brought snapshots %v", names)
	}
	if got, err := b.GetVolume(c, "copy"); err != nil || got.ExportID != nv.ExportID {
		t.Errorf("index: %+v, %v", got, err)
	}
}

// A handover (drain, promotion with a live primary): final snapshot sent,
// the primary demoted without divergence, the replica promoted at the
// final snapshot; the old primary then replicates the new one.
func TestReplicaHandover(t *testing.T) {
	a, b := replPools(t)
	c := ctx(t)
	v := mustCreate(t, a, zfs.VolumeSpec{Name: "v", Capacity: 32 * mib, Thick: true})
	writeRandom(t, v.Mountpoint, "one", 1<<20)
	s1, _, _ := a.ReplSnapshot(c, "v")
	mustStream(t, a, b, v, "", s1)
	writeRandom(t, v.Mountpoint, "two", 1<<20)
	// Published before the final step: the promoted copy exports to the
	// same nodes (the demotion clears them on the old primary).
	pubs := []zfs.Publication{{Node: "n1@10.0.0.2"}, {Node: "n2@10.0.0.3", ReadOnly: true}}
	v, err := a.SetPublished(c, "v", pubs)
	if err != nil {
		t.Fatal(err)
	}
	final, _, _ := a.ReplSnapshot(c, "v")
	wantFinal := sums(t, v.Mountpoint)
	mustStream(t, a, b, v, s1, final)
	if err := a.ReplicationSent(c, "v", final, nil); err != nil {
		t.Fatal(err)
	}
	if got := zfsGet(t, "refreservation", replicaDS(b, "v")); got != "33554432" {
		t.Errorf("thick replica's refreservation = %s", got)
	}
	if div, err := a.DemoteToReplica(c, "v", b.Name(), 1, false, final); err != nil || div != "" {
		t.Fatalf("DemoteToReplica = %q, %v", div, err)
	}
	if st, _ := a.ReplicaState(c, "v"); st.Role != api.RoleReplica || st.Latest != final || st.Generation != 1 {
		t.Errorf("old primary after handover = %+v", st)
	}
	if got := zfsGet(t, "mounted", replicaDS(a, "v")); got != "no" {
		t.Errorf("demoted copy mounted = %s", got)
	}
	if got := zfsGet(t, "dots:exportid", replicaDS(a, "v")); got != "-" {
		t.Errorf("demoted copy keeps export id %s", got)
	}
	nv, err := b.PromoteReplica(c, "v", 2, final, []api.Peer{{Server: a.Name()}}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !nv.Thick || nv.Capacity != 32*mib || nv.Generation != 2 {
		t.Errorf("promoted = %+v", nv)
	}
	if !slices.Equal(nv.Published, pubs) {
		t.Errorf("promoted copy published to %+v, want %+v", nv.Published, pubs)
	}
	wantSums(t, "promoted at the final snapshot", sums(t, nv.Mountpoint), wantFinal)
	writeRandom(t, nv.Mountpoint, "three", 1<<20)
	// An unpublication reaches the replicas with the next stream.
	if nv, err = b.SetPublished(c, "v", pubs[:1]); err != nil {
		t.Fatal(err)
	}
	s3, _, _ := b.ReplSnapshot(c, "v")
	want3 := sums(t, nv.Mountpoint)
	st := mustStream(t, b, a, nv, final, s3)
	if st.Generation != 2 || st.Latest != s3 {
		t.Errorf("old primary's state = %+v", st)
	}
	if got := zfsGet(t, "dots:primary", replicaDS(a, "v")); got != b.Name() {
		t.Errorf("old primary's replica names %q as primary", got)
	}
	if got := zfsGet(t, "dots:published", replicaDS(a, "v")); got != pubs[0].Node {
		t.Errorf("old primary's replica published to %q, want %q", got, pubs[0].Node)
	}
	wantSums(t, "old primary replicating the new one", snapSums(t, a, replicaDS(a, "v")+"@"+s3), want3)
}
