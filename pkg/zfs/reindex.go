package zfs

import (
	"context"
	"slices"
	"strings"

	"k8s.io/klog/v2"
)

// listing is what one pass over the pool's volumes and trash found.
type listing struct {
	vols  []*Volume
	snaps []*Snapshot
	ids   map[uint32]bool // export ids carried by datasets, live or trashed
	// volumesMountpoint is where POOL/dots/volumes is mounted: a new
	// volume inherits it with its name appended.
	volumesMountpoint string
}

// listPool reads every volume, trashed volume and snapshot in one
// `zfs get -d 2` of volumes/ and trash/.
func (p *Pool) listPool(ctx context.Context) (*listing, error) {
	props := append(slices.Clone(p.volProps), propDeferDestroy, propGroup)
	t, err := p.getProps(ctx, 2, props, p.volumesDataset(), p.trashDataset())
	if err != nil {
		return nil, err
	}
	return p.listingFromProps(t), nil
}

func (p *Pool) listingFromProps(t *propTable) *listing {
	l := &listing{ids: exportIDsInUse(t), vols: []*Volume{}, snaps: []*Snapshot{}}
	volumes := p.volumesDataset()
	if d, ok := t.props[volumes]; ok {
		l.volumesMountpoint = d.str(propMountpoint)
	}
	byDataset := map[string]*Volume{}
	for _, n := range t.order {
		d := t.props[n]
		if ds, snap, isSnap := splitSnapshot(n); isSnap {
			// zfs lists a dataset before its snapshots.
			if at, ok := ReplSnapshotTime(snap); ok && byDataset[ds] != nil && at.After(byDataset[ds].ReplLatestTime) {
				byDataset[ds].ReplLatest, byDataset[ds].ReplLatestTime = snap, at
			}
			if s, ok := snapshotFromProps(n, d); ok {
				l.snaps = append(l.snaps, s)
			}
			continue
		}
		if parent, _ := splitParent(n); parent != volumes || d.localStr(propTrashed) != "" {
			continue
		}
		v, err := volumeFromProps(n, d, p.tunables)
		if err != nil {
			klog.V(2).InfoS("Skipping dataset dots did not create", "dataset", n, "err", err)
			continue
		}
		l.vols = append(l.vols, v)
		byDataset[n] = v
	}
	return l
}

// loadIndex fills the index and the export id allocator from one listing
// (Open, after recovery).
func (p *Pool) loadIndex(ctx context.Context) error {
	l, err := p.listPool(ctx)
	if err != nil {
		return err
	}
	p.index.beginReload()
	p.index.endReload(l.vols, l.snaps)
	p.volumesMountpoint = l.volumesMountpoint
	if err := p.ids.load(ctx, l.ids); err != nil {
		return err
	}
	// After the reserve and the recovery changed it: what creates check.
	_, err = p.RefreshCapacity(ctx)
	return err
}

// Reindex lists the pool again and adopts what it says over the index:
// anything changed behind the server's back (by hand, or by a bug) is
// returned, logged and from then on served as the pool has it. Entries
// the pool's own operations changed while it listed are kept as they are.
func (p *Pool) Reindex(ctx context.Context) (IndexDiff, error) {
	p.reindexMu.Lock()
	defer p.reindexMu.Unlock()
	p.index.beginReload()
	l, err := p.listPool(ctx)
	if err != nil {
		p.index.endReload(nil, nil)
		return IndexDiff{}, err
	}
	d := p.index.endReload(l.vols, l.snaps)
	p.ids.addUsed(l.ids)
	if !d.Empty() {
		klog.InfoS("The pool differed from the server's index: adopted the pool's state", "pool", p.name,
			"volumesAdded", d.VolumesAdded, "volumesRemoved", d.VolumesRemoved, "volumesChanged", d.VolumesChanged,
			"snapshotsAdded", d.SnapshotsAdded, "snapshotsRemoved", d.SnapshotsRemoved, "snapshotsChanged", d.SnapshotsChanged)
	}
	return d, nil
}

// Counts are the pool's volumes, snapshots and provisioned bytes, from the
// index.
func (p *Pool) Counts() Counts { return p.index.counts() }

// volumeMountpoint is where a new volume's dataset mounts (inherited).
func (p *Pool) volumeMountpoint(name string) string {
	mp := p.volumesMountpoint
	if mp == "" || mp == "none" || mp == "legacy" {
		return ""
	}
	return strings.TrimSuffix(mp, "/") + "/" + name
}
