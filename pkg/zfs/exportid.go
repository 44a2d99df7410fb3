package zfs

import (
	"context"
	"fmt"
	"strconv"

	"k8s.io/klog/v2"
)

// Export ids are 1..MaxExportID (NFS-Ganesha takes 16 bits; 0 is the
// pseudo root and 65535 is reserved). NFS file handles embed the export id,
// so an id is never handed out again while any dataset (live or trashed)
// carries it: a client holding an old handle must get ESTALE, not another
// volume's files.
const MaxExportID = 65534

// nextExportID is the id after id, wrapping to 1.
func nextExportID(id uint32) uint32 { return id%MaxExportID + 1 }

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

// allocateExportID takes the next free id from the counter stored on
// POOL/dots and advances the counter, so ids grow monotonically across
// restarts and pool moves and wrap only after 65534 allocations.
func (p *Pool) allocateExportID(ctx context.Context) (uint32, error) {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	if p.ids == nil {
		if err := p.scanExportIDs(ctx); err != nil {
			return 0, err
		}
	}
	root := p.rootDataset()
	if p.nextID == 0 {
		// Read once: this process is the pool's only writer.
		t, err := p.getProps(ctx, depthSelf, []string{propNextExportID}, root)
		if err != nil {
			return 0, err
		}
		n, _ := strconv.ParseUint(t.props[root].localStr(propNextExportID), 10, 32)
		p.nextID = uint32(n)
	}
	start := p.nextID
	id, ok := pickExportID(start, p.ids)
	if !ok {
		// The in-memory set only grows; a rescan forgets reaped datasets.
		if err := p.scanExportIDs(ctx); err != nil {
			return 0, err
		}
		if id, ok = pickExportID(start, p.ids); !ok {
			return 0, fmt.Errorf("%w: all %d export ids are in use", ErrNoSpace, MaxExportID)
		}
	}
	next := nextExportID(id)
	if err := p.zfsSet(ctx, root, map[string]string{propNextExportID: strconv.FormatUint(uint64(next), 10)}); err != nil {
		p.nextID = 0 // unknown again: re-read next time
		return 0, err
	}
	p.nextID = next
	p.ids[id] = true
	klog.V(4).InfoS("Allocated export id", "pool", p.name, "id", id)
	return id, nil
}

// scanExportIDs reads the ids every dataset carries.
func (p *Pool) scanExportIDs(ctx context.Context) error {
	t, err := p.getProps(ctx, depthRecursive, []string{propExportID}, p.rootDataset())
	if err != nil {
		return err
	}
	p.ids = exportIDsInUse(t)
	return nil
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
