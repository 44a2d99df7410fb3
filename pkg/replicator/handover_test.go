package replicator

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/replication"
	"github.com/dots-csi/dots/pkg/zfs"
)

// A step of the sender loop that runs while Handover is between its final
// step and the demotion (the loop was poked, or its interval came) must
// not snapshot and send: the final snapshot has to be the newest on every
// replica, or the promotion expecting it fails.
func TestHandoverFinalIsNewest(t *testing.T) {
	peerC := api.Peer{Server: "c", Address: "c:7070"}
	pool := newFakePool()
	pool.copies["v"] = &fakeCopy{role: api.RolePrimary, gen: 1, reps: []api.Peer{peerB, peerC}}
	b, c := &fakePeer{}, &fakePeer{}
	host := &fakeHost{exported: map[string]bool{"v": true}}
	m := newManagerDialing(t, pool, host, bOrC(b, c))
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	p := m.primaryOf("v")
	p.confirmed.Store(true)
	if err := m.step(ctx, p); err != nil {
		t.Fatal(err)
	}
	// The loop's step, run where the race let it run: after the final
	// step, before the demotion. It waits for nothing Handover holds.
	var during error
	pool.beforeDemote = func() { during = m.step(ctx, p) }
	res, err := m.Handover(ctx, api.HandoverRequest{Volume: "v"})
	if err != nil || during != nil {
		t.Fatalf("handover: %+v, %v; the loop's step during it: %v", res, err, during)
	}
	if res.Final == "" {
		t.Fatal("handover named no final snapshot")
	}
	for name, peer := range map[string]*fakePeer{"b": b, "c": c} {
		if n := len(peer.streams); n == 0 || peer.streams[n-1].Snapshot != res.Final {
			t.Errorf("replica %s: streams %+v, want the last one to carry the final %s", name, peer.streams, res.Final)
		}
	}
	if snaps := pool.copies["v"].snaps; snaps[len(snaps)-1] != res.Final {
		t.Errorf("the handed-over copy's snapshots %v: the final %s is not the newest", snaps, res.Final)
	}
	if host.is("v") || pool.copies["v"].role != api.RoleReplica {
		t.Errorf("after the handover: exported %t, role %s", host.is("v"), pool.copies["v"].role)
	}
}

// The nodes a primary is published to travel in every stream's header
// (through its JSON), so a promoted replica exports to them: in
// Kubernetes nothing publishes the volume again after a move.
func TestHeaderCarriesPublications(t *testing.T) {
	pubs := []zfs.Publication{{Node: "n1@10.0.0.2"}, {Node: "n2@10.0.0.3", ReadOnly: true}}
	v := &zfs.Volume{Name: "v", Generation: 3, Capacity: 1 << 20, Published: pubs}
	b, err := json.Marshal(headerOf(zfs.ReplicaSpecOf(v, "a", zfs.ReplSnapshotName(timeAt(1)), "")))
	if err != nil {
		t.Fatal(err)
	}
	var h replication.StreamHeader
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	if got := specOf(h).Published; !slices.Equal(got, pubs) {
		t.Fatalf("received publications %+v (header %s), want %+v", got, b, pubs)
	}
}
