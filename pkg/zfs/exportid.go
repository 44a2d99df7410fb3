package zfs

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Export ids are 1..MaxExportID (NFS-Ganesha takes 16 bits; 0 is the
// pseudo root and 65535 is reserved). NFS file handles embed the export id,
// so an id is never handed out again while any dataset (live or trashed)
// carries it, and ids advance monotonically (wrapping only after 65534
// allocations), across restarts and pool moves: a client holding a handle
// of a deleted volume must get ESTALE, not another volume's files.
const MaxExportID = 65534

// exportIDBlock is how many ids one persisted mark reserves: one
// `zfs set` per this many creates.
const exportIDBlock = 128

// nextExportID is the id after id, wrapping to 1.
func nextExportID(id uint32) uint32 { return id%MaxExportID + 1 }

// advanceExportID is the id n places after id, wrapping.
func advanceExportID(id, n uint32) uint32 { return (id-1+n)%MaxExportID + 1 }

// pickExportID returns the first id from start on (wrapping) that is not
// in used.
func pickExportID(start uint32, used map[uint32]bool) (uint32, bool) {
	if start < 1 || start > MaxExportID {
		start = 1
	}
	id := start
	for range MaxExportID {
		if !used[id] {
			return id, true
		}
		id = nextExportID(id)
	}
	return 0, false
}

// markStore keeps the allocator's mark where it survives the process (on
// POOL/dots, as dots:next-exportid, so it moves with the pool).
type markStore interface {
	readMark(ctx context.Context) (uint32, error) // 0: none stored
	writeMark(ctx context.Context, mark uint32) error
	scanIDs(ctx context.Context) (map[uint32]bool, error)
}

// idAllocator hands out export ids from memory. The stored mark is the
// first id a restarted process may hand out: every id given out lies
// before it (in allocation order), because the mark is raised and
// persisted before the ids below it are used, a block at a time. So a
// create costs no command; one in exportIDBlock creates raises the mark,
// normally in the background when half the block is used.
type idAllocator struct {
	store markStore
	block uint32

	mu        sync.Mutex
	used      map[uint32]bool
	next      uint32 // the next candidate
	mark      uint32 // persisted: ids from next up to (not including) mark may be handed out
	extending bool   // a background raise runs

	persistMu sync.Mutex // one raise of the mark at a time (never held with mu)
}

func newIDAllocator(store markStore, block uint32) *idAllocator {
	return &idAllocator{store: store, block: block, used: map[uint32]bool{}, next: 1, mark: 1}
}

// load starts the allocator from the ids the pool's datasets carry and the
// stored mark (or, with none, after the highest id found), and reserves
// the first block.
func (a *idAllocator) load(ctx context.Context, ids map[uint32]bool) error {
	stored, err := a.store.readMark(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.used = map[uint32]bool{}
	var highest uint32
	for id := range ids {
		a.used[id] = true
		highest = max(highest, id)
	}
	switch {
	case stored >= 1 && stored <= MaxExportID:
		a.next = stored
	default:
		a.next = nextExportID(highest)
	}
	a.mark = a.next
	a.mu.Unlock()
	_, _, err = a.raise(ctx, false)
	return err
}

// addUsed adds ids a listing found (a reload): ids never leave the set
// until a rescan.
func (a *idAllocator) addUsed(ids map[uint32]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id := range ids {
		a.used[id] = true
	}
}

// window is how many ids lie between next and mark.
func (a *idAllocator) windowLocked() uint32 {
	return (a.mark + MaxExportID - a.next) % MaxExportID
}

// pickLocked takes the first free id inside the reserved window.
func (a *idAllocator) pickLocked() (uint32, bool) {
	id := a.next
	for range a.windowLocked() {
		if !a.used[id] {
			a.used[id] = true
			a.next = nextExportID(id)
			return id, true
		}
		id = nextExportID(id)
	}
	a.next = a.mark
	return 0, false
}

// allocate returns a new export id. It waits for a command only when the
// reserved window is used up (the background raise fell behind). A raise
// hands the caller an id under the same lock that widens the window, so
// concurrent creates cannot starve one another of ids; only the request's
// deadline bounds the loop.
func (a *idAllocator) allocate(ctx context.Context) (uint32, error) {
	for {
		a.mu.Lock()
		if id, ok := a.pickLocked(); ok {
			kick := a.windowLocked() < a.block/2 && !a.extending
			if kick {
				a.extending = true
			}
			a.mu.Unlock()
			if kick {
				go a.raiseInBackground(ctx)
			}
			return id, nil
		}
		full := len(a.used) >= MaxExportID
		a.mu.Unlock()
		if full {
			// The set only grows; a rescan forgets reaped datasets.
			ids, err := a.store.scanIDs(ctx)
			if err != nil {
				return 0, err
			}
			a.mu.Lock()
			a.used = ids
			full = len(a.used) >= MaxExportID
			a.mu.Unlock()
			if full {
				return 0, fmt.Errorf("%w: all %d export ids are in use", ErrNoSpace, MaxExportID)
			}
		}
		id, ok, err := a.raise(ctx, true)
		if err != nil {
			return 0, err
		}
		if ok {
			return id, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("no free export id before the deadline: %w", err)
		}
	}
}

func (a *idAllocator) raiseInBackground(ctx context.Context) {
	// Its own deadline: the create that kicked it may end first.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, _, err := a.raise(rctx, false); err != nil {
		klog.ErrorS(err, "Reserving export ids ahead; the next create that needs one tries again")
	}
	a.mu.Lock()
	a.extending = false
	a.mu.Unlock()
}

// raise persists a mark a block past the first free id from next, unless
// the window already holds half a block. With take it also hands out an id
// from the window it left, under the lock that set it.
func (a *idAllocator) raise(ctx context.Context, take bool) (uint32, bool, error) {
	a.persistMu.Lock()
	defer a.persistMu.Unlock()
	a.mu.Lock()
	if a.windowLocked() >= a.block/2 && a.freeInWindowLocked() {
		defer a.mu.Unlock()
		if take {
			id, ok := a.pickLocked()
			return id, ok, nil
		}
		return 0, false, nil
	}
	first, ok := pickExportID(a.next, a.used)
	if !ok {
		first = a.next
	}
	target := advanceExportID(first, a.block)
	a.mu.Unlock()
	if err := a.store.writeMark(ctx, target); err != nil {
		return 0, false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mark = target
	klog.V(4).InfoS("Reserved export ids", "upTo", target)
	if take {
		id, ok := a.pickLocked()
		return id, ok, nil
	}
	return 0, false, nil
}

func (a *idAllocator) freeInWindowLocked() bool {
	id := a.next
	for range a.windowLocked() {
		if !a.used[id] {
			return true
		}
		id = nextExportID(id)
	}
	return false
}

// poolMarks stores the mark on POOL/dots.
type poolMarks struct{ p *Pool }

func (m poolMarks) readMark(ctx context.Context) (uint32, error) {
	root := m.p.rootDataset()
	t, err := m.p.getProps(ctx, depthSelf, []string{propNextExportID}, root)
	if err != nil {
		return 0, err
	}
	n, _ := strconv.ParseUint(t.props[root].localStr(propNextExportID), 10, 32)
	return uint32(n), nil
}

func (m poolMarks) writeMark(ctx context.Context, mark uint32) error {
	return m.p.zfsSet(ctx, m.p.rootDataset(), map[string]string{propNextExportID: strconv.FormatUint(uint64(mark), 10)})
}

// scanIDs reads the ids every dataset carries.
func (m poolMarks) scanIDs(ctx context.Context) (map[uint32]bool, error) {
	t, err := m.p.getProps(ctx, depthRecursive, []string{propExportID}, m.p.rootDataset())
	if err != nil {
		return nil, err
	}
	return exportIDsInUse(t), nil
}

func exportIDsInUse(t *propTable) map[uint32]bool {
	ids := map[uint32]bool{}
	for _, n := range t.order {
		if id, err := strconv.ParseUint(t.props[n].localStr(propExportID), 10, 32); err == nil && id >= 1 && id <= MaxExportID {
			ids[uint32(id)] = true
		}
	}
	return ids
}
