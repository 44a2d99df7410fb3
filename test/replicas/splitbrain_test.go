//go:build integration

package replicas

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/replenv"
	"github.com/dots-csi/dots/pkg/api"
)

// TestSplitBrain: the primary's server stops (its pool intact) after a
// write no replica received; the replica is promoted and written to; the
// old primary comes back. It never exports the volume: it learns of the
// newer generation, demotes itself to a replica of the new primary, and
// keeps its divergent write whole in a diverged dataset with a
// dots-diverged snapshot. The volume's data is the new primary's, and the
// old primary's replica converges to it.
func TestSplitBrain(t *testing.T) {
	srv := cluster(t, 2)
	a, b := srv[0], srv[1]
	every := interval()
	v := newVolume(t, a, "split", 128<<20, every, b)
	v.mustWrite(t, a, "common", replenv.RandomData(t, 256<<10))
	// No more sends on their own: the write below reaches no replica.
	setReplicas(t, a, v.id, time.Hour, b)
	ctx := context.Background()
	if _, err := a.Replication().Sync(ctx, api.SyncRequest{Volume: v.id}); err != nil {
		t.Fatal(err)
	}
	if st := a.ReplicaStatus(t, v.id, b.Name); st.LastError != "" || st.LastSync.IsZero() {
		t.Fatalf("sync to %s: %+v", b.Name, st)
	}
	divergent := replenv.RandomData(t, 128<<10)
	v.mustWrite(t, a, "divergent", divergent)
	a.Stop()

	bst := promoteOn(t, b, v.id, every, a)
	poll.Until(t, time.Minute, "a write on the new primary", func() error {
		return v.write(t, b, "new-primary", replenv.RandomData(t, 64<<10))
	})
	wroteOnB := time.Now()

	a.Start()
	pseudo := v.export
	var ast api.VolumeState
	poll.Until(t, 30*every, a.Name+" demoted to a replica of generation 2", func() error {
		if a.Exported(t)[pseudo] {
			t.Fatalf("%s exports %s, which a newer generation serves elsewhere", a.Name, pseudo)
		}
		var err error
		ast, err = a.Replication().State(ctx, v.id)
		switch {
		case err != nil:
			return err
		case ast.Role != api.RoleReplica || ast.Generation != bst.Generation+1:
			return fmt.Errorf("%s's copy: %s of generation %d", a.Name, ast.Role, ast.Generation)
		}
		return nil
	})
	if a.Exported(t)[pseudo] {
		t.Fatalf("%s exports %s after its demotion", a.Name, pseudo)
	}
	if _, err := readNFS(t, a, v.export, "common"); err == nil {
		t.Fatalf("%s serves the stale copy of %s", a.Name, v.id)
	}
	list, err := a.CSI().ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.GetEntries() {
		if e.GetVolume().GetVolumeId() == v.id {
			t.Fatalf("%s still lists %s as its volume", a.Name, v.id)
		}
	}

	// The divergent write is kept whole, under a dots-diverged snapshot.
	if len(ast.Diverged) != 1 {
		t.Fatalf("%s reports diverged copies %v, want one", a.Name, ast.Diverged)
	}
	snaps := a.Snapshots(t, ast.Diverged[0])
	i := slices.IndexFunc(snaps, func(s string) bool { return strings.HasPrefix(s, "dots-diverged-") })
	if i < 0 {
		t.Fatalf("%s has no dots-diverged snapshot: %v", ast.Diverged[0], snaps)
	}
	a.WithClone(t, ast.Diverged[0]+"@"+snaps[i], func(dir string) {
		sums := replenv.ReadSums(t, dir)
		if sums["divergent"] != replenv.Sum(divergent) || sums["common"] != v.files["common"] {
			t.Fatalf("the diverged copy holds %v, want the divergent and common files", sums)
		}
	})

	// The volume's data is the new primary's.
	if _, err := readNFS(t, b, v.export, "divergent"); err == nil {
		t.Fatal("the new primary serves the old primary's divergent write")
	}
	for _, name := range []string{"common", "new-primary"} {
		if data, err := readNFS(t, b, v.export, name); err != nil || replenv.Sum(data) != v.files[name] {
			t.Fatalf("%s on the new primary: %v", name, err)
		}
	}
	// The old primary is now the new one's replica: it converges.
	replenv.WaitSynced(t, a, v.id, wroteOnB, 30*every)
	sums, snap := replicaSums(t, a, v.id)
	if _, ok := sums["divergent"]; ok {
		t.Fatalf("%s's replica at %s holds the divergent write", a.Name, snap)
	}
	want := map[string]string{"common": v.files["common"], "new-primary": v.files["new-primary"]}
	sameFiles(t, a.Name+"'s replica at "+snap, want, sums)
	// It follows by increments from the last common snapshot: the
	// demotion copied nothing, and the new primary never sent the whole
	// volume again (the common file alone is larger than what was sent).
	if st := b.ReplicaStatus(t, v.id, a.Name); st.BytesSent >= 256<<10 {
		t.Errorf("the new primary sent %d bytes to its old primary: the whole volume again, not an increment", st.BytesSent)
	}
	t.Logf("split brain: %s kept %s; its replica follows %s (%s)", a.Name, path.Base(ast.Diverged[0]), b.Name, snap)
}
