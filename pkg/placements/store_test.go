package placements

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
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
	if err != nil || !slices.Equal(list, []Record{{Snapshot, "pvc-1", "srv-b"}, {Volume, "pvc-1", "srv-a"}}) {
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
