package registry

import (
	"context"
	"maps"
	"testing"

	"github.com/dots-csi/dots/pkg/api"
)

func member(t *testing.T, r *Registry) *Member {
	t.Helper()
	m, ok := r.Get("s0")
	if !ok {
		t.Fatal("s0 not in the registry")
	}
	return m
}

// TestProbeIsASummary: a probe round asks each server for its manifest and
// Probe, nothing else (no listing, however many volumes it holds), and
// takes space and counts from the manifest.
func TestProbeIsASummary(t *testing.T) {
	srv, r := newPoolRegistry(t)
	srv.set(100, "ONLINE")
	srv.update(func(p *api.PoolInfo) { p.Volumes, p.Provisioned = 10000, 10000<<30 })
	for round := range 3 {
		r.Refresh(context.Background())
		if got, want := srv.takeCalls(), map[string]int{"GetPluginInfo": 1, "Probe": 1}; !maps.Equal(got, want) {
			t.Fatalf("round %d asked %v, want %v", round, got, want)
		}
	}
	st := member(t, r).Status()
	if !st.Healthy || st.Volumes != 10000 || st.Snapshots != 2 || st.Provisioned != 10000<<30 || !st.CountsKnown ||
		st.Available != 900 || st.Used != 100 || st.Size != 1000 {
		t.Fatalf("status %+v", st)
	}
}

// TestOlderServers: a manifest without counts keeps the counts known
// before (and this controller's accounting); one without space costs one
// GetCapacity more. Neither makes the probe list anything.
func TestOlderServers(t *testing.T) {
	srv, r := newPoolRegistry(t)
	srv.set(100, "ONLINE")
	r.Refresh(context.Background())
	m := member(t, r)
	srv.update(func(p *api.PoolInfo) { p.HasCounts, p.Available, p.Used = false, 800, 200 })
	m.Account(Change{Volumes: 1, Provisioned: 50})
	srv.takeCalls()
	r.Refresh(context.Background())
	if got, want := srv.takeCalls(), map[string]int{"GetPluginInfo": 1, "Probe": 1}; !maps.Equal(got, want) {
		t.Fatalf("without counts, a round asked %v, want %v", got, want)
	}
	if st := m.Status(); st.Volumes != 8 || st.Provisioned != 3050 || st.Snapshots != 2 || !st.CountsKnown || st.Available != 800 {
		t.Fatalf("without counts: %+v, want the counts known before (7 volumes, 3000 bytes) plus the one accounted, space from the manifest", st)
	}

	// No pool figures at all: space from GetCapacity; counts as before.
	srv.update(func(p *api.PoolInfo) { p.Pool = ""; p.Available = 700 })
	r.Refresh(context.Background())
	if got, want := srv.takeCalls(), map[string]int{"GetPluginInfo": 1, "Probe": 1, "GetCapacity": 1}; !maps.Equal(got, want) {
		t.Fatalf("without space, a round asked %v, want %v", got, want)
	}
	if st := m.Status(); !st.Healthy || st.Available != 700 || st.Volumes != 8 {
		t.Fatalf("without space: %+v", st)
	}
}

// TestNeverCounted: a server that never reported counts shows only this
// controller's accounting, and says so.
func TestNeverCounted(t *testing.T) {
	srv, r := newPoolRegistry(t)
	srv.set(100, "ONLINE")
	srv.update(func(p *api.PoolInfo) { p.HasCounts = false })
	r.Refresh(context.Background())
	m := member(t, r)
	m.Account(Change{Volumes: 2, Provisioned: 20})
	m.Account(Change{Volumes: -3, Provisioned: -30}) // deletes of volumes made before: never below zero
	if st := m.Status(); st.CountsKnown || st.Volumes != 0 || st.Provisioned != 0 || st.Accounted != 2 {
		t.Fatalf("status %+v", st)
	}
}

// TestAccount: creates and deletes move the figures between probes (a
// thick volume's reservation takes free space, and the pool's figures keep
// adding up); the next probe replaces them with the server's.
func TestAccount(t *testing.T) {
	srv, r := newPoolRegistry(t)
	srv.set(100, "ONLINE")
	r.Refresh(context.Background())
	m := member(t, r)
	m.Account(Change{Volumes: 1, Provisioned: 300})               // thin
	m.Account(Change{Volumes: 1, Provisioned: 200, Reserve: 200}) // thick
	m.Account(Change{Volumes: -1, Provisioned: -100})
	st := m.Status()
	if st.Volumes != 8 || st.Provisioned != 3400 || st.Available != 700 || st.Used != 300 || st.Size != 1000 || st.Accounted != 3 {
		t.Fatalf("after three changes: %+v", st)
	}
	m.Account(Change{Reserve: 5000})
	if st := m.Status(); st.Available != 0 || st.Used != 1000 {
		t.Fatalf("a reservation beyond the free space: %+v, want none free", st)
	}
	r.Refresh(context.Background())
	if st := m.Status(); st.Volumes != 7 || st.Provisioned != 3000 || st.Available != 900 || st.Used != 100 || st.Accounted != 0 {
		t.Fatalf("after the next probe: %+v, want the server's figures", st)
	}
}

// TestReplicasHeld: the count of replicas a server holds, and its zone,
// come from its manifest.
func TestReplicasHeld(t *testing.T) {
	srv, r := newPoolRegistry(t)
	srv.set(100, "ONLINE")
	r.Refresh(context.Background())
	if st := member(t, r).Status(); st.Replicas != 0 {
		t.Fatalf("replicas %d before any manifest said", st.Replicas)
	}
	srv.mu.Lock()
	srv.extra = map[string]string{api.ManifestReplicas: "12", api.ManifestZone: "zone-b"}
	srv.mu.Unlock()
	r.Refresh(context.Background())
	if st := member(t, r).Status(); st.Replicas != 12 || st.Zone != "zone-b" {
		t.Fatalf("replicas %d, zone %q; want 12, zone-b", st.Replicas, st.Zone)
	}
}
