package replicator

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/replication"
	"github.com/dots-csi/dots/pkg/zfs"
)

var peerB = api.Peer{Server: "b", Address: "b:7070"}

func newManager(t *testing.T, pool *fakePool, peer *fakePeer) (*Manager, *fakeHost) {
	t.Helper()
	host := &fakeHost{exported: map[string]bool{}}
	return newManagerDialing(t, pool, host, func(string) *fakePeer { return peer }), host
}

// newManagerDialing is server a's manager, whose dial of an address
// reaches dial's peer.
func newManagerDialing(t *testing.T, pool *fakePool, host *fakeHost, dial func(addr string) *fakePeer) *Manager {
	t.Helper()
	m, err := New(Config{Server: "a", Dial: func(addr string) (Peer, error) { return dial(addr), nil }}, pool, host)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// bOrC dials peerB's address to b and any other to c.
func bOrC(b, c *fakePeer) func(string) *fakePeer {
	return func(addr string) *fakePeer {
		if addr == peerB.Address {
			return b
		}
		return c
	}
}

// The start-up rule: a replicated primary is held until a replica
// answers; no answer keeps it held; an answer without a newer generation
// confirms and exports it.
func TestStartupRuleConfirms(t *testing.T) {
	pool := newFakePool()
	pool.copies["v"] = &fakeCopy{role: api.RolePrimary, gen: 2, reps: []api.Peer{peerB}}
	pool.copies["plain"] = &fakeCopy{role: api.RolePrimary, gen: 1}
	peer := &fakePeer{err: errors.New("unreachable")}
	m, host := newManager(t, pool, peer)
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if !m.Held("v") || m.Held("plain") {
		t.Fatalf("held: v %t, plain %t; want only the replicated primary", m.Held("v"), m.Held("plain"))
	}
	p := m.primaryOf("v")
	if err := m.confirm(ctx, p); !errors.Is(err, replication.ErrUnreachable) || !m.Held("v") || host.is("v") {
		t.Fatalf("no replica answering: %v, held %t, exported %t", err, m.Held("v"), host.is("v"))
	}
	if _, why := m.Status(pool.vol("v", pool.copies["v"])); !strings.Contains(why, "not served") {
		t.Fatalf("a held primary's status: %q", why)
	}
	peer.err, peer.state = nil, api.VolumeState{Volume: "v", Exists: true, Role: api.RolePrimary, Generation: 2}
	if err := m.confirm(ctx, p); err == nil || !m.Held("v") {
		t.Fatalf("a replica answering as a primary of the same generation confirmed it: %v", err)
	}
	peer.state = api.VolumeState{Volume: "v", Exists: true, Role: api.RoleReplica, Generation: 2}
	if err := m.confirm(ctx, p); err != nil || m.Held("v") || !host.is("v") {
		t.Fatalf("confirmed: %v, held %t, exported %t", err, m.Held("v"), host.is("v"))
	}
}

// A replica holding a newer generation makes the primary stale: it is
// demoted keeping its writes, never exported.
func TestStartupRuleDemotesStale(t *testing.T) {
	pool := newFakePool()
	pool.copies["v"] = &fakeCopy{role: api.RolePrimary, gen: 1, reps: []api.Peer{peerB}, snaps: []string{zfs.ReplSnapshotName(timeAt(10))}}
	peer := &fakePeer{state: api.VolumeState{Volume: "v", Exists: true, Role: api.RolePrimary, Generation: 2, Latest: zfs.ReplSnapshotName(timeAt(20))}}
	m, host := newManager(t, pool, peer)
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	p := m.primaryOf("v")
	err := m.confirm(ctx, p)
	var stale *staleError
	if !errors.As(err, &stale) || !errors.Is(err, api.ErrStaleGeneration) {
		t.Fatalf("confirm: %v, want stale", err)
	}
	if err := m.demoteStale(ctx, p, stale); err != nil {
		t.Fatal(err)
	}
	// The peer's newest snapshot is not held here: the common one is the
	// newest this copy has.
	want := "v 2 " + zfs.ReplSnapshotName(timeAt(10)) + " true"
	if len(pool.demoted) != 1 || pool.demoted[0] != want || host.is("v") || m.primaryOf("v") != nil {
		t.Fatalf("demoted %v (want %q), exported %t, still a primary %t", pool.demoted, want, host.is("v"), m.primaryOf("v") != nil)
	}
}

func TestReceiveGenerations(t *testing.T) {
	ctx := context.Background()
	base := zfs.ReplSnapshotName(timeAt(10))
	h := replication.StreamHeader{Volume: "v", Snapshot: zfs.ReplSnapshotName(timeAt(30)), Base: base, Generation: 2,
		Source: "b", Kind: replication.KindReplica, Capacity: 1 << 20}
	for _, tc := range []struct {
		name    string
		copy    *fakeCopy
		wantErr error
		demoted string
	}{
		{"a newer replica refuses an older stream", &fakeCopy{role: api.RoleReplica, gen: 3, snaps: []string{base}}, api.ErrStaleGeneration, ""},
		{"a primary of the same generation refuses", &fakeCopy{role: api.RolePrimary, gen: 2, snaps: []string{base}}, api.ErrNotReplica, ""},
		{"an older primary demotes at the stream's base, then receives", &fakeCopy{role: api.RolePrimary, gen: 1, snaps: []string{base}}, nil, "v 2 " + base + " true"},
		{"a replica receives", &fakeCopy{role: api.RoleReplica, gen: 2, snaps: []string{base}}, nil, ""},
		{"no copy receives", nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newFakePool()
			if tc.copy != nil {
				pool.copies["v"] = tc.copy
			}
			m, host := newManager(t, pool, &fakePeer{})
			host.exported["v"] = tc.copy != nil && tc.copy.role == api.RolePrimary
			st, err := m.Receive(ctx, h, strings.NewReader("stream"))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Receive: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				if len(pool.received) != 0 {
					t.Fatalf("refused, yet received %v", pool.received)
				}
				return
			}
			if st.Latest != h.Snapshot || st.Role != api.RoleReplica || len(pool.received) != 1 {
				t.Fatalf("state %+v, received %v", st, pool.received)
			}
			if got := strings.Join(pool.demoted, ","); got != tc.demoted {
				t.Fatalf("demoted %q, want %q", got, tc.demoted)
			}
			if host.is("v") {
				t.Fatal("a replica is exported")
			}
		})
	}
}

func TestPromoteChecks(t *testing.T) {
	ctx := context.Background()
	pool := newFakePool()
	pool.copies["r"] = &fakeCopy{role: api.RoleReplica, gen: 1, snaps: []string{zfs.ReplSnapshotName(timeAt(5))}}
	pool.copies["p"] = &fakeCopy{role: api.RolePrimary, gen: 3}
	m, host := newManager(t, pool, &fakePeer{})
	if _, err := m.Promote(ctx, api.PromoteRequest{Volume: "none", Generation: 2}); !errors.Is(err, replication.ErrNoCopy) {
		t.Errorf("no copy: %v", err)
	}
	if _, err := m.Promote(ctx, api.PromoteRequest{Volume: "p", Generation: 4}); !errors.Is(err, api.ErrNotReplica) {
		t.Errorf("a primary of another generation: %v", err)
	}
	if _, err := m.Promote(ctx, api.PromoteRequest{Volume: "r", Generation: 2, Replicas: []api.Peer{{Server: "a", Address: "x"}}}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("itself as a replica: %v", err)
	}
	st, err := m.Promote(ctx, api.PromoteRequest{Volume: "r", Generation: 2, Replicas: []api.Peer{peerB}})
	if err != nil || st.Role != api.RolePrimary || st.Generation != 2 || !host.is("r") || m.Held("r") {
		t.Fatalf("promote: %+v, %v, exported %t, held %t", st, err, host.is("r"), m.Held("r"))
	}
	// The promotion's snapshot is the old primary's base until it reports.
	if got := m.primaryOf("r").known("b"); !got.Equal(timeAt(5)) {
		t.Fatalf("the replica's known base %s, want the promotion's snapshot", got)
	}
	m.forget("r")
}

// A step sends the increment from the newest snapshot both hold, or the
// whole volume when the replica holds none of this copy's.
func TestStepChoosesBase(t *testing.T) {
	ctx := context.Background()
	held := zfs.ReplSnapshotName(timeAt(10))
	for _, tc := range []struct {
		name   string
		latest string
		want   string
	}{
		{"common snapshot", held, held},
		{"replica holds one unknown here", zfs.ReplSnapshotName(timeAt(7)), ""},
		{"empty replica", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newFakePool()
			pool.copies["v"] = &fakeCopy{role: api.RolePrimary, gen: 1, reps: []api.Peer{peerB}, snaps: []string{held}}
			peer := &fakePeer{state: api.VolumeState{Volume: "v", Exists: tc.latest != "", Role: api.RoleReplica, Generation: 1, Latest: tc.latest}}
			m, _ := newManager(t, pool, peer)
			p := newPrimary("v", []api.Peer{peerB}, 0)
			p.confirmed.Store(true)
			if err := m.step(ctx, p); err != nil {
				t.Fatal(err)
			}
			if len(peer.streams) != 1 || peer.streams[0].Base != tc.want || peer.streams[0].Generation != 1 {
				t.Fatalf("streams %+v, want one from %q", peer.streams, tc.want)
			}
			if st := p.statuses(timeAt(0))[0]; st.LastSync.IsZero() || st.LastError != "" {
				t.Fatalf("status after the step: %+v", st)
			}
		})
	}
}

// The start-up rule with two replicas: B was promoted (generation 2) and
// is down before it sent to C, which still holds generation 1. C's answer
// alone must not confirm the stale A; once B answers, A learns it is stale.
func TestStartupRuleNeedsEveryReplica(t *testing.T) {
	peerC := api.Peer{Server: "c", Address: "c:7070"}
	pool := newFakePool()
	pool.copies["v"] = &fakeCopy{role: api.RolePrimary, gen: 1, reps: []api.Peer{peerB, peerC}}
	b := &fakePeer{err: errors.New("unreachable")}
	c := &fakePeer{state: api.VolumeState{Volume: "v", Exists: true, Role: api.RoleReplica, Generation: 1}}
	host := &fakeHost{exported: map[string]bool{}}
	m := newManagerDialing(t, pool, host, bOrC(b, c))
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	p := m.primaryOf("v")
	if err := m.confirm(ctx, p); !errors.Is(err, replication.ErrUnreachable) || !m.Held("v") || host.is("v") {
		t.Fatalf("one of two replicas answering: %v, held %t, exported %t; want held", err, m.Held("v"), host.is("v"))
	}
	b.err, b.state = nil, api.VolumeState{Volume: "v", Exists: true, Role: api.RolePrimary, Generation: 2}
	var stale *staleError
	if err := m.confirm(ctx, p); !errors.As(err, &stale) || stale.peer.Server != "b" || host.is("v") {
		t.Fatalf("both answering, b newer: %v, exported %t; want stale (b)", err, host.is("v"))
	}
	// Both answering without a newer generation confirm it.
	b.state = api.VolumeState{Volume: "v", Exists: true, Role: api.RoleReplica, Generation: 1}
	if err := m.confirm(ctx, p); err != nil || m.Held("v") || !host.is("v") {
		t.Fatalf("both answering: %v, held %t, exported %t", err, m.Held("v"), host.is("v"))
	}
}

// TestDivergedListNotStaleAfterDemotion: a listing that began before a
// demotion (and so misses its diverged copy) is not cached past it, and
// none is served from the cache while the demotion runs.
func TestDivergedListNotStaleAfterDemotion(t *testing.T) {
	pool := newFakePool()
	var copies atomic.Value
	copies.Store([]string(nil))
	listing, release := make(chan struct{}), make(chan struct{})
	var blockOnce atomic.Bool
	pool.divergedCopies = func() []string {
		got := copies.Load().([]string)
		if blockOnce.CompareAndSwap(false, true) {
			close(listing)
			<-release
		}
		return got
	}
	m, _ := newManager(t, pool, nil)
	ctx := context.Background()

	early := make(chan []string)
	go func() {
		l, err := m.divergedOf(ctx, "v")
		if err != nil {
			t.Error(err)
		}
		early <- l
	}()
	<-listing // read the pool before the demotion

	done := m.divergedChanging("v")
	copies.Store([]string{"pool/dots/diverged/v-g1-1"})
	if l, _ := m.divergedOf(ctx, "v"); len(l) != 1 {
		t.Errorf("during the demotion: %v, want its copy", l)
	}
	done()
	close(release)
	if l := <-early; len(l) != 0 {
		t.Fatalf("the early listing: %v, want what it read (nothing)", l)
	}
	if l, _ := m.divergedOf(ctx, "v"); len(l) != 1 {
		t.Fatalf("after the demotion: %v, want its copy (the early listing was cached)", l)
	}
}
