package zfs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// maxReapRounds bounds Reap's passes. Destroying one trashed clone can free
// the last (deferred) snapshot of another trashed dataset, so Reap repeats
// until a pass destroys nothing.
const maxReapRounds = 64

// trashRenameAttempts: moving into the trash is tried briefly. When it
// stays busy the dataset waits in place (see trashVolume).
const trashRenameAttempts = 3

// trashEntry is a deleted volume still under volumes/.
type trashEntry struct {
	name     string
	exportID uint32
}

// trashVolume takes a deleted volume that has snapshots out of the user's
// view, so its snapshots stay usable. Its commit point is one user
// property, dots:trashed, whose set neither unmounts the dataset nor needs
// more space than the emergency reserve gives back: when it fails, nothing
// changed and the volume is still mounted. From then on the volume is
// deleted for the user, and the rest is housekeeping that Reap finishes
// if it stops half way: unmount, canmount=off (see retire), and a rename
// under POOL/dots/trash so its name is free. zfs-fuse refuses to rename a
// dataset whose snapshots are origins of mounted clones ("dataset is busy",
// for as long as the clones stay mounted); such a dataset stays where it
// is, marked, until Reap can move or destroy it, or a new volume wants its
// name (freeName).
func (p *Pool) trashVolume(ctx context.Context, v *Volume) error {
	stamp := time.Now().UTC().Format(time.RFC3339)
	if err := p.spacious(ctx, func() error {
		return p.zfsSet(ctx, v.Dataset, map[string]string{propTrashed: stamp})
	}); err != nil {
		return err
	}
	p.index.dropVolume(v.Name)
	p.forgetMountError(v.Dataset)
	e := trashEntry{name: v.Name, exportID: v.ExportID}
	if err := p.retire(ctx, v.Dataset); err != nil {
		p.trashMu.Lock()
		p.pending[v.Dataset] = e
		p.trashMu.Unlock()
		klog.InfoS("Deleted volume stays mounted until maintenance retires it", "pool", p.name, "dataset", v.Dataset, "reason", err.Error())
		return nil
	}
	if err := p.moveToTrash(ctx, v.Dataset, e, trashRenameAttempts); err != nil {
		klog.InfoS("Deleted volume waits in place: it cannot move into the trash yet", "pool", p.name, "dataset", v.Dataset, "reason", err.Error())
	}
	return nil
}

// retire unmounts a deleted volume's dataset and keeps it unmounted. Both
// steps may run on a full pool (see spacious).
func (p *Pool) retire(ctx context.Context, ds string) error {
	t, err := p.getProps(ctx, depthSelf, []string{propMounted, propCanmount}, ds)
	if err != nil {
		return err
	}
	d := t.props[ds]
	if d.str(propMounted) == "yes" {
		if err := p.spacious(ctx, func() error { return p.zfsUnmount(ctx, ds) }); err != nil {
			return err
		}
	}
	if d.str(propCanmount) != "off" {
		return p.spacious(ctx, func() error { return p.zfsSet(ctx, ds, map[string]string{propCanmount: "off"}) })
	}
	return nil
}

// moveToTrash renames a trashed dataset under POOL/dots/trash. On failure
// it is remembered as pending, for Reap and freeName.
func (p *Pool) moveToTrash(ctx context.Context, ds string, e trashEntry, attempts int) error {
	dest := p.trashDataset() + "/" + trashName(e.name, e.exportID)
	err := p.spacious(ctx, func() error { return p.zfsRename(ctx, ds, dest, attempts) })
	if err == nil {
		p.forgetPending(ds)
		p.index.moveDataset(ds, dest)
		klog.InfoS("Moved deleted volume with snapshots to trash", "pool", p.name, "volume", e.name, "dataset", dest)
		return nil
	}
	// "does not exist" may be about the destination's parent: only a
	// source that is really gone is forgotten.
	if _, gerr := p.getProps(ctx, depthSelf, []string{propType}, ds); errors.Is(gerr, ErrNotFound) {
		p.forgetPending(ds)
		// A rename can happen although its command failed (zfs-fuse's
		// lost ioctl answer, retried as busy: the retry finds no source).
		if _, derr := p.getProps(ctx, depthSelf, []string{propType}, dest); derr == nil {
			p.index.moveDataset(ds, dest)
		}
		return nil
	}
	p.trashMu.Lock()
	defer p.trashMu.Unlock()
	p.pending[ds] = e
	return err
}

// freeName makes sure no deleted volume waiting in place holds dataset.
func (p *Pool) freeName(ctx context.Context, ds string) error {
	p.trashMu.Lock()
	e, ok := p.pending[ds]
	p.trashMu.Unlock()
	if !ok {
		return nil
	}
	if n, err := p.snapshotCount(ctx, ds); err == nil && n == 0 {
		if err := p.spacious(ctx, func() error { return p.zfsDestroy(ctx, ds, destroyNow) }); err == nil || errors.Is(err, ErrNotFound) {
			p.forgetPending(ds)
			return nil
		}
	}
	if err := p.moveToTrash(ctx, ds, e, trashRenameAttempts); err != nil {
		return fmt.Errorf("%w: a deleted volume still holds the name while clones of its snapshots are mounted: %v", ErrBusy, err)
	}
	return nil
}

func (p *Pool) forgetPending(ds string) {
	p.trashMu.Lock()
	defer p.trashMu.Unlock()
	delete(p.pending, ds)
}

func (p *Pool) pendingTrash() map[string]trashEntry {
	p.trashMu.Lock()
	defer p.trashMu.Unlock()
	out := make(map[string]trashEntry, len(p.pending))
	for k, v := range p.pending {
		out[k] = v
	}
	return out
}

// Reap destroys deleted volumes that no longer have snapshots: nobody can
// reach them any more. The destroy is never recursive, so a dataset that
// gains a snapshot or a dependent clone meanwhile is refused by ZFS itself.
// Deleted volumes waiting in place are moved into the trash when possible.
func (p *Pool) Reap(ctx context.Context) error { return p.reap(ctx, true) }

// reap is Reap; without move, deleted volumes waiting in place are
// destroyed once they have no snapshots but not renamed: on zfs-fuse a
// rename unmounts the clones of their snapshots for its duration, which
// fails while the NFS server holds them and, when it does not (a restart
// of it), leaves them unserved for a moment. Deletes kick a reap without
// moves; the periodic pass moves.
func (p *Pool) reap(ctx context.Context, move bool) error {
	var errs []error
	for range maxReapRounds {
		destroyed := 0
		t, err := p.getProps(ctx, 2, []string{propType}, p.trashDataset())
		if err != nil {
			return err
		}
		empty := datasetsWithoutSnapshots(p.trashDataset(), t.order)
		pending := p.pendingTrash()
		for ds, e := range pending {
			n, err := p.snapshotCount(ctx, ds)
			switch {
			case errors.Is(err, ErrNotFound):
				p.forgetPending(ds)
			case err != nil:
				errs = append(errs, err)
			case n == 0:
				empty = append(empty, ds)
			case !move:
			default:
				if err := p.retire(ctx, ds); err != nil {
					errs = append(errs, err)
					continue
				}
				_ = p.moveToTrash(ctx, ds, e, 1) // still busy: next time
			}
		}
		sort.Strings(empty)
		for _, ds := range empty {
			err := p.spacious(ctx, func() error { return p.zfsDestroy(ctx, ds, destroyNow) })
			switch {
			case err == nil:
				destroyed++
				p.forgetPending(ds)
				klog.InfoS("Reaped deleted volume", "pool", p.name, "dataset", ds)
			case errors.Is(err, ErrNotFound):
				p.forgetPending(ds)
			case errors.Is(err, errHasChildren), errors.Is(err, errHasClones):
			default:
				errs = append(errs, err)
			}
		}
		if destroyed == 0 {
			break
		}
	}
	return errors.Join(errs...)
}

// datasetsWithoutSnapshots picks, from the names below parent (datasets
// and snapshots, as `zfs get -d 2` lists them), the datasets with no
// snapshot.
func datasetsWithoutSnapshots(parent string, names []string) []string {
	hasSnap := map[string]bool{}
	var datasets []string
	for _, n := range names {
		if !strings.HasPrefix(n, parent+"/") {
			continue
		}
		if ds, _, ok := splitSnapshot(n); ok {
			hasSnap[ds] = true
			continue
		}
		datasets = append(datasets, n)
	}
	var out []string
	for _, ds := range datasets {
		if !hasSnap[ds] {
			out = append(out, ds)
		}
	}
	return out
}

// recover finishes what a crash or an earlier process left: internal
// snapshots (a clone's source, a hidden deleted snapshot) must be marked
// for deferred destruction, so ZFS removes them with their last clone;
// deleted volumes waiting in place are remembered; live volumes are
// mounted; then Reap runs. Open runs it before anything else can use the
// pool, so no operation is half way through meanwhile. A volume that does
// not mount is recorded (MountError) and the rest are served: Maintain
// tries it again.
func (p *Pool) recover(ctx context.Context) error {
	props := []string{propType, propDeferDestroy, propMounted, propCanmount, propTrashed, propName, propExportID}
	t, err := p.getProps(ctx, depthRecursive, props, p.rootDataset())
	if err != nil {
		return err
	}
	volumes := p.volumesDataset() + "/"
	for _, full := range t.order {
		if err := ctx.Err(); err != nil {
			return err
		}
		d := t.props[full]
		if _, snap, ok := splitSnapshot(full); ok {
			if !isInternalSnapshot(snap) || d.str(propDeferDestroy) == "on" {
				continue
			}
			if err := p.spacious(ctx, func() error { return p.zfsDestroy(ctx, full, destroyDeferred) }); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			klog.InfoS("Recovered internal snapshot left by an interrupted operation", "pool", p.name, "snapshot", full)
			continue
		}
		if !strings.HasPrefix(full, volumes) || d.localStr(propName) == "" {
			continue
		}
		switch {
		case d.localStr(propTrashed) != "":
			id, _ := strconv.ParseUint(d.localStr(propExportID), 10, 32)
			p.pending[full] = trashEntry{name: d.localStr(propName), exportID: uint32(id)}
		case d.str(propMounted) == "no":
			err := p.spacious(ctx, func() error { return p.zfsMount(ctx, full) })
			if err != nil {
				p.setMountError(full, err)
				klog.ErrorS(err, "A volume does not mount: it is not served until it does", "pool", p.name, "dataset", full)
				continue
			}
			klog.InfoS("Mounted volume found unmounted", "pool", p.name, "dataset", full)
		}
	}
	if err := p.Reap(ctx); err != nil {
		klog.ErrorS(err, "Reaping trash at start; maintenance tries again", "pool", p.name)
	}
	return nil
}
