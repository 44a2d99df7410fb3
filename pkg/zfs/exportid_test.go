package zfs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"
)

// memMarks is a markStore in memory, as a pool would keep it: the mark
// survives an allocator (a restart), and the datasets' ids are whatever
// the test says exists.
type memMarks struct {
	mu      sync.Mutex
	mark    uint32
	writes  int
	failing error
	live    map[uint32]bool // ids datasets carry (scanIDs)
}

func (m *memMarks) readMark(context.Context) (uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mark, nil
}

func (m *memMarks) writeMark(_ context.Context, mark uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failing != nil {
		return m.failing
	}
	m.mark = mark
	m.writes++
	return nil
}

func (m *memMarks) scanIDs(context.Context) (map[uint32]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[uint32]bool{}
	for id := range m.live {
		out[id] = true
	}
	return out, nil
}

func (m *memMarks) get() (mark uint32, writes int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mark, m.writes
}

// ahead is how far b lies after a in allocation order (0..MaxExportID-1).
func ahead(a, b uint32) uint32 { return (b + MaxExportID - a) % MaxExportID }

// TestAllocatorNeverHandsOutPastThePersistedMark: every id is below the
// mark stored at the moment it is handed out, so a restart (which starts at
// the stored mark) never hands it out again; the mark is written about
// once per half block, not per id.
func TestAllocatorNeverHandsOutPastThePersistedMark(t *testing.T) {
	ctx := context.Background()
	store := &memMarks{mark: 500}
	a := newIDAllocator(store, 16)
	if err := a.load(ctx, map[uint32]bool{3: true, 501: true}); err != nil {
		t.Fatal(err)
	}
	if mark, writes := store.get(); writes != 1 || mark != 500+16 {
		t.Fatalf("after load: mark %d, %d writes; want the first block reserved (516, 1 write)", mark, writes)
	}
	handed := map[uint32]bool{}
	const n = 1000
	for range n {
		id, err := a.allocate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mark, _ := store.get()
		if ahead(500, id) >= ahead(500, mark) {
			t.Fatalf("id %d handed out at or past the stored mark %d", id, mark)
		}
		if id == 501 || id == 3 || handed[id] {
			t.Fatalf("id %d is in use", id)
		}
		handed[id] = true
	}
	// Wait for a raise still running in the background, then count.
	poll.Until(t, 10*time.Second, "background raise ends", func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.extending {
			return errors.New("raising")
		}
		return nil
	})
	if _, writes := store.get(); writes > n/(16/2)+2 {
		t.Errorf("%d mark writes for %d ids: more than one per half block", writes, n)
	}

	// A restart after every volume was deleted: nothing handed out before
	// comes again, although no dataset carries those ids any more.
	b := newIDAllocator(store, 16)
	if err := b.load(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for range 200 {
		id, err := b.allocate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if handed[id] {
			t.Fatalf("id %d handed out again after a restart", id)
		}
	}
}

// TestAllocatorStartsAfterTheHighestIDWithoutAMark: a pool that has no
// mark (made before marks, or never used) starts after its highest id.
func TestAllocatorStartsAfterTheHighestIDWithoutAMark(t *testing.T) {
	ctx := context.Background()
	store := &memMarks{}
	a := newIDAllocator(store, 8)
	if err := a.load(ctx, map[uint32]bool{7: true, 40: true}); err != nil {
		t.Fatal(err)
	}
	if id, err := a.allocate(ctx); err != nil || id != 41 {
		t.Fatalf("first id = %d, %v; want 41", id, err)
	}
	// At the top of the range it wraps to 1.
	store = &memMarks{}
	a = newIDAllocator(store, 8)
	if err := a.load(ctx, map[uint32]bool{MaxExportID: true}); err != nil {
		t.Fatal(err)
	}
	if id, err := a.allocate(ctx); err != nil || id != 1 {
		t.Fatalf("first id = %d, %v; want 1", id, err)
	}
}

// TestAllocatorConcurrent: ids handed out at once are distinct.
func TestAllocatorConcurrent(t *testing.T) {
	ctx := context.Background()
	a := newIDAllocator(&memMarks{}, 32)
	if err := a.load(ctx, nil); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 200
	ids := make([][]uint32, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				id, err := a.allocate(ctx)
				if err != nil {
					errs[w] = err
					return
				}
				ids[w] = append(ids[w], id)
			}
		})
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for w := range workers {
		if errs[w] != nil {
			t.Fatal(errs[w])
		}
		for _, id := range ids[w] {
			if seen[id] {
				t.Fatalf("id %d handed out twice", id)
			}
			seen[id] = true
		}
	}
}

// TestAllocatorStoreFailure: when the mark cannot be written, no id past
// it is handed out; allocation works again once the store does.
func TestAllocatorStoreFailure(t *testing.T) {
	ctx := context.Background()
	store := &memMarks{}
	a := newIDAllocator(store, 4)
	if err := a.load(ctx, nil); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.failing = errors.New("pool suspended")
	store.mu.Unlock()
	got := 0
	var err error
	for range 10 {
		if _, err = a.allocate(ctx); err != nil {
			break
		}
		got++
	}
	if err == nil || got != 4 {
		t.Fatalf("handed out %d ids with the mark stuck at 4 ids ahead (last error %v)", got, err)
	}
	store.mu.Lock()
	store.failing = nil
	store.mu.Unlock()
	if _, err := a.allocate(ctx); err != nil {
		t.Fatalf("after the store recovered: %v", err)
	}
}

// TestAllocatorFull: with every id carried by a dataset, a rescan decides;
// ids whose datasets are gone are free again.
func TestAllocatorFull(t *testing.T) {
	ctx := context.Background()
	all := map[uint32]bool{}
	for id := uint32(1); id <= MaxExportID; id++ {
		all[id] = true
	}
	store := &memMarks{live: all}
	a := newIDAllocator(store, 8)
	if err := a.load(ctx, all); err != nil {
		t.Fatal(err)
	}
	if _, err := a.allocate(ctx); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("allocate with every id in use = %v, want ErrNoSpace", err)
	}
	store.mu.Lock()
	delete(store.live, 777)
	store.mu.Unlock()
	if id, err := a.allocate(ctx); err != nil || id != 777 {
		t.Fatalf("allocate after a reap = %d, %v; want 777", id, err)
	}
}

// TestPoolMarksCommands: the pool keeps the mark on POOL/dots and writes it
// once per block, not per create.
func TestPoolMarksCommands(t *testing.T) {
	get := "zfs get -Hp -o name,property,value,source dots:next-exportid tank/dots"
	r := &scripted{answers: map[string]scriptedAnswer{
		get: {out: "tank/dots\tdots:next-exportid\t500\tlocal\n"},
		"zfs set dots:next-exportid=629 tank/dots": {},
	}}
	p := &Pool{name: "tank", runner: r, flavor: flavors[CLIZFSFuse]}
	a := newIDAllocator(poolMarks{p}, exportIDBlock)
	if err := a.load(context.Background(), map[uint32]bool{500: true}); err != nil {
		t.Fatal(err)
	}
	for i := range exportIDBlock / 2 {
		id, err := a.allocate(context.Background())
		if want := uint32(501 + i); err != nil || id != want {
			t.Fatalf("allocation %d = %d, %v; want %d", i, id, err, want)
		}
	}
	if want := fmt.Sprint([]string{get, "zfs set dots:next-exportid=629 tank/dots"}); fmt.Sprint(r.ran) != want {
		t.Errorf("ran %q, want %s", r.ran, want)
	}
}
