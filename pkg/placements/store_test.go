package placements

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// testStore runs the Store contract against one implementation.
func testStore(t *testing.T, s Store) {
	ctx := context.Background()
	r := Record{Kind: Volume, ID: "pvc-1", Server: "srv-a"}
	if _, ok, err := s.Get(ctx, Volume, "pvc-1"); ok || err != nil {
		t.Fatalf("empty store: %v %v", ok, err)
	}
	if err := s.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, r); err != nil {
		t.Fatalf("the same record again: %v", err)
	}
	if err := s.Put(ctx, Record{Kind: Volume, ID: "pvc-1", Server: "srv-b"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("the name on another server: %v, want ErrConflict", err)
	}
	// Kinds are separate namespaces.
	if err := s.Put(ctx, Record{Kind: Snapshot, ID: "pvc-1", Server: "srv-b"}); err != nil {
		t.Fatal(err)
	}
	if srv, ok, err := s.Get(ctx, Volume, "pvc-1"); srv != "srv-a" || !ok || err != nil {
		t.Fatalf("Get = %q %v %v", srv, ok, err)
	}
	list, err := s.List(ctx)
	want := []Record{{Kind: Snapshot, ID: "pvc-1", Server: "srv-b"}, {Kind: Volume, ID: "pvc-1", Server: "srv-a"}}
	if err != nil || !slices.EqualFunc(list, want, Record.Equal) {
		t.Fatalf("List = %v %v", list, err)
	}
	// Delete removes only the record of that server.
	if err := s.Delete(ctx, Record{Kind: Volume, ID: "pvc-1", Server: "srv-b"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, Volume, "pvc-1"); !ok {
		t.Fatal("a delete naming another server removed the record")
	}
	if err := s.Delete(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, Volume, "pvc-1"); ok {
		t.Fatal("record survived its delete")
	}
	if err := s.Delete(ctx, r); err != nil {
		t.Fatalf("deleting a missing record: %v", err)
	}
	// Concurrent puts of one name on different servers: exactly one wins.
	var wg sync.WaitGroup
	wins := make(chan string, 8)
	for _, srv := range []string{"s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Put(ctx, Record{Kind: Volume, ID: "race", Server: srv}); err == nil {
				wins <- srv
			} else if !errors.Is(err, ErrConflict) {
				t.Errorf("Put: %v", err)
			}
		}()
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Errorf("%d puts of one name won, want 1", n)
	}
	testUpdate(t, s)
	if f, err := s.Forgotten(ctx, "srv-a"); f || err != nil {
		t.Fatalf("Forgotten before Forget: %v %v", f, err)
	}
	if err := s.Forget(ctx, "srv-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Forget(ctx, "srv-a"); err != nil {
		t.Fatalf("forgetting twice: %v", err)
	}
	if f, err := s.Forgotten(ctx, "srv-a"); !f || err != nil {
		t.Fatalf("Forgotten after Forget: %v %v", f, err)
	}
}

// testUpdate runs the compare-and-swap of a replicated volume's record.
func testUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	r := Record{Kind: Volume, ID: "repl", Server: "srv-a", Replicas: []string{"srv-b", "srv-c"}, Interval: 10 * time.Second}
	if err := s.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.Lookup(ctx, Volume, "repl"); !ok || err != nil || !got.Equal(r) {
		t.Fatalf("Lookup = %+v %v %v, want %+v", got, ok, err, r)
	}
	moved := r.Moved("srv-b", []string{"srv-c", "srv-a"}, 2)
	if moved.ClusterID() != "srv-a/repl" || r.ClusterID() != "srv-a/repl" {
		t.Fatalf("cluster IDs %q %q, want the origin's", moved.ClusterID(), r.ClusterID())
	}
	if err := s.Update(ctx, r, moved); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Lookup(ctx, Volume, "repl"); !got.Equal(moved) {
		t.Fatalf("after the move: %+v, want %+v", got, moved)
	}
	// The same swap again: the record is no longer what it expects.
	if err := s.Update(ctx, r, moved); !errors.Is(err, ErrChanged) {
		t.Fatalf("a stale update: %v, want ErrChanged", err)
	}
	bad := moved
	bad.Replicas = []string{"srv-b"}
	if err := s.Update(ctx, moved, bad); err == nil {
		t.Fatal("a primary that is its own replica accepted")
	}
	if err := s.Update(ctx, Record{Kind: Volume, ID: "none", Server: "srv-a"}, Record{Kind: Volume, ID: "none", Server: "srv-b"}); !errors.Is(err, ErrChanged) {
		t.Fatalf("update of a missing record: %v, want ErrChanged", err)
	}
	// Concurrent swaps from one record: exactly one wins.
	var wg sync.WaitGroup
	wins := make(chan string, 4)
	for _, srv := range []string{"srv-c", "srv-d", "srv-e", "srv-f"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := moved
			next.Server, next.Replicas, next.Generation = srv, []string{"srv-b"}, 3
			if err := s.Update(ctx, moved, next); err == nil {
				wins <- srv
			} else if !errors.Is(err, ErrChanged) {
				t.Errorf("Update: %v", err)
			}
		}()
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Errorf("%d concurrent updates won, want 1", n)
	}
	got, _, _ := s.Lookup(ctx, Volume, "repl")
	if err := s.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Lookup(ctx, Volume, "repl"); ok {
		t.Fatal("record survived its delete")
	}
}

func TestMemory(t *testing.T) { testStore(t, NewMemory()) }

func TestDir(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	testStore(t, d)
	// What it wrote survives a new process.
	again, err := NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := again.Forgotten(context.Background(), "srv-a"); !f {
		t.Error("forgotten server lost on reopen")
	}
	// A record written before replicas existed (the server's name alone)
	// reads as one without replicas, and can be updated.
	if err := os.WriteFile(filepath.Join(dir, "volume", "old"), []byte("srv-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old, ok, err := d.Lookup(context.Background(), Volume, "old")
	if !ok || err != nil || !old.Equal(Record{Kind: Volume, ID: "old", Server: "srv-a"}) {
		t.Fatalf("old record: %+v %v %v", old, ok, err)
	}
	next := Record{Kind: Volume, ID: "old", Server: "srv-a", Replicas: []string{"srv-b"}}
	if err := d.Update(context.Background(), old, next); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := again.Lookup(context.Background(), Volume, "old"); !got.Equal(next) {
		t.Fatalf("reopened: %+v", got)
	}
	if _, _, err := d.Get(context.Background(), Volume, "../etc/passwd"); err == nil {
		t.Error("a path outside the store accepted as an id")
	}
	if _, err := NewDir("relative"); err == nil {
		t.Error("relative store dir accepted")
	}
}

// The Kubernetes store against client-go's fake API (which runs creates,
// gets and deletes with their semantics, preconditions included); the e2e
// test runs it against a real API server.
func TestKubernetes(t *testing.T) {
	cs := fake.NewClientset()
	// The fake's tracker keeps no resource versions; the API server does,
	// and refuses an update of a stale one. So does this reactor (the
	// fake runs reactors under its lock: the check and the write are one).
	cs.PrependReactor("update", "leases", func(action k8stesting.Action) (bool, runtime.Object, error) {
		l := action.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		cur, err := cs.Tracker().Get(action.GetResource(), action.GetNamespace(), l.Name)
		if err != nil {
			return true, nil, err
		}
		if rv := cur.(*coordinationv1.Lease).ResourceVersion; rv != l.ResourceVersion {
			return true, nil, apierrors.NewConflict(action.GetResource().GroupResource(), l.Name, errors.New("stale resource version"))
		}
		n, _ := strconv.Atoi(l.ResourceVersion)
		l = l.DeepCopy()
		l.ResourceVersion = strconv.Itoa(n + 1)
		return true, l, cs.Tracker().Update(action.GetResource(), l, action.GetNamespace())
	})
	k := NewKubernetesWith(cs.CoordinationV1().Leases("dots"), "dots")
	testStore(t, k)
	// Names that are not valid object names are hashed, and found again.
	ctx := context.Background()
	odd := "_h0123456789abcdef0123456789abcdef01234567"
	if err := k.Put(ctx, Record{Kind: Volume, ID: odd, Server: "srv-a"}); err != nil {
		t.Fatal(err)
	}
	if s, ok, err := k.Get(ctx, Volume, odd); s != "srv-a" || !ok || err != nil {
		t.Fatalf("hashed record: %q %v %v", s, ok, err)
	}
	if n := objectName(Volume, "pvc-0b1c"); n != "volume.pvc-0b1c" {
		t.Errorf("readable name = %q", n)
	}
}
