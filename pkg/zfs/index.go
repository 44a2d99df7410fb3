package zfs

import (
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
)

// index holds the pool's live volumes and user snapshots in memory, so
// reads (get, list, counts) run no zfs command: a listing is O(page), not
// O(pool). It is loaded at Open from one listing, kept current by the
// pool's own operations (each updates it after its command succeeded),
// and re-verified by Reindex (the reconciler's pass), which adopts the
// pool's truth and reports what differed.
//
// One RWMutex guards the maps and is never held across a command. Keys are
// kept sorted as they change (an insert moves the tail of a slice: cheap
// at tens of thousands of entries), so a page is a binary search and a
// slice.
type index struct {
	mu       sync.RWMutex
	vols     map[string]*Volume
	volKeys  []string
	snaps    map[string]*Snapshot
	snapKeys []string
	// provisioned is the sum of the live volumes' capacities.
	provisioned int64
	// touched records the keys changed while a reload lists the pool
	// (nil when none runs): the reload keeps their current entries, since
	// its listing may predate the change.
	touched map[string]bool
}

func newIndex() *index {
	return &index{vols: map[string]*Volume{}, snaps: map[string]*Snapshot{}}
}

func volKey(name string) string  { return "v/" + name }
func snapKey(name string) string { return "s/" + name }

// cloneVolume copies a volume so callers never share the index's entry.
func cloneVolume(v *Volume) *Volume {
	c := *v
	c.Properties = maps.Clone(v.Properties)
	c.Published = slices.Clone(v.Published)
	c.Replicas = slices.Clone(v.Replicas)
	return &c
}

func cloneSnapshot(s *Snapshot) *Snapshot {
	c := *s
	return &c
}

func insertKey(keys []string, k string) []string {
	i, found := slices.BinarySearch(keys, k)
	if found {
		return keys
	}
	return slices.Insert(keys, i, k)
}

func removeKey(keys []string, k string) []string {
	i, found := slices.BinarySearch(keys, k)
	if !found {
		return keys
	}
	return slices.Delete(keys, i, i+1)
}

func (x *index) touch(key string) {
	if x.touched != nil {
		x.touched[key] = true
	}
}

// putVolume stores a copy of v, replacing any entry of its name.
func (x *index) putVolume(v *Volume) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.touch(volKey(v.Name))
	x.setVolumeLocked(cloneVolume(v))
}

func (x *index) setVolumeLocked(v *Volume) {
	if old, ok := x.vols[v.Name]; ok {
		x.provisioned -= old.Capacity
	} else {
		x.volKeys = insertKey(x.volKeys, v.Name)
	}
	x.vols[v.Name] = v
	x.provisioned += v.Capacity
}

func (x *index) dropVolume(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.touch(volKey(name))
	x.dropVolumeLocked(name)
}

func (x *index) dropVolumeLocked(name string) {
	if old, ok := x.vols[name]; ok {
		x.provisioned -= old.Capacity
		delete(x.vols, name)
		x.volKeys = removeKey(x.volKeys, name)
	}
}

// updateVolume changes a volume's entry in place (a copy of it), if there
// is one, and returns the new state.
func (x *index) updateVolume(name string, change func(*Volume)) (*Volume, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old, ok := x.vols[name]
	if !ok {
		return nil, false
	}
	x.touch(volKey(name))
	v := cloneVolume(old)
	change(v)
	x.setVolumeLocked(v)
	return cloneVolume(v), true
}

func (x *index) volume(name string) (*Volume, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	v, ok := x.vols[name]
	if !ok {
		return nil, false
	}
	return cloneVolume(v), true
}

// volumePage returns up to max volumes (0: all) named after after, in name
// order, and whether more follow.
func (x *index) volumePage(after string, max int) ([]*Volume, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	start := 0
	if after != "" {
		start = sort.SearchStrings(x.volKeys, after)
		if start < len(x.volKeys) && x.volKeys[start] == after {
			start++
		}
	}
	end := len(x.volKeys)
	if max > 0 && start+max < end {
		end = start + max
	}
	out := make([]*Volume, 0, end-start)
	for _, k := range x.volKeys[start:end] {
		out = append(out, cloneVolume(x.vols[k]))
	}
	return out, end < len(x.volKeys)
}

func (x *index) putSnapshot(s *Snapshot) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.touch(snapKey(s.Name))
	if _, ok := x.snaps[s.Name]; !ok {
		x.snapKeys = insertKey(x.snapKeys, s.Name)
	}
	x.snaps[s.Name] = cloneSnapshot(s)
}

func (x *index) dropSnapshot(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.touch(snapKey(name))
	if _, ok := x.snaps[name]; ok {
		delete(x.snaps, name)
		x.snapKeys = removeKey(x.snapKeys, name)
	}
}

func (x *index) snapshot(name string) (*Snapshot, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	s, ok := x.snaps[name]
	if !ok {
		return nil, false
	}
	return cloneSnapshot(s), true
}

// groupSnapshots returns the members of a group snapshot, in source
// volume order. It scans the snapshots: group calls are rare next to
// listings, and a second map would have to follow every reload.
func (x *index) groupSnapshots(group string) []*Snapshot {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []*Snapshot
	for _, s := range x.snaps {
		if s.Group == group {
			out = append(out, cloneSnapshot(s))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SourceVolume < out[j].SourceVolume })
	return out
}

// snapshotPage returns up to max snapshots (0: all) named after after, of
// volume source (any when ""), in name order, and whether more may follow.
// A filtered page scans past the snapshots of other volumes: a full pass
// still reads each snapshot once.
func (x *index) snapshotPage(after string, max int, source string) ([]*Snapshot, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	start := 0
	if after != "" {
		start = sort.SearchStrings(x.snapKeys, after)
		if start < len(x.snapKeys) && x.snapKeys[start] == after {
			start++
		}
	}
	var out []*Snapshot
	for i := start; i < len(x.snapKeys); i++ {
		s := x.snaps[x.snapKeys[i]]
		if source != "" && s.SourceVolume != source {
			continue
		}
		if max > 0 && len(out) == max {
			return out, true
		}
		out = append(out, cloneSnapshot(s))
	}
	return out, false
}

// moveDataset follows a dataset's rename (into the trash): its snapshots'
// full names change, nothing else.
func (x *index) moveDataset(from, to string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	prefix := from + snapshotSeparator
	for name, s := range x.snaps {
		if strings.HasPrefix(s.Dataset, prefix) {
			x.touch(snapKey(name))
			c := cloneSnapshot(s)
			c.Dataset = to + snapshotSeparator + strings.TrimPrefix(s.Dataset, prefix)
			x.snaps[name] = c
		}
	}
}

// dropSnapshotsOf forgets the snapshots of a dataset that stopped being
// a volume (a demoted primary's: a replica's snapshots are not listed).
func (x *index) dropSnapshotsOf(dataset string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	prefix := dataset + snapshotSeparator
	for name, s := range x.snaps {
		if strings.HasPrefix(s.Dataset, prefix) {
			x.touch(snapKey(name))
			delete(x.snaps, name)
			x.snapKeys = removeKey(x.snapKeys, name)
		}
	}
}

// setUsed records the volumes' referenced bytes read by a usage pass.
func (x *index) setUsed(used map[string]int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for name, n := range used {
		if v, ok := x.vols[name]; ok && v.Used != n {
			c := cloneVolume(v)
			c.Used = n
			x.vols[name] = c
		}
	}
}

// Counts are the index's totals.
type Counts struct {
	Volumes, Snapshots int
	// Provisioned is the sum of the live volumes' capacities.
	Provisioned int64
}

func (x *index) counts() Counts {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return Counts{Volumes: len(x.vols), Snapshots: len(x.snaps), Provisioned: x.provisioned}
}

// IndexDiff is what a reload found different from the index: entries
// missing from it, entries it had that the pool does not, and entries
// whose recorded fields differed. Used and available bytes change by
// themselves and are not counted.
type IndexDiff struct {
	VolumesAdded, VolumesRemoved, VolumesChanged       []string
	SnapshotsAdded, SnapshotsRemoved, SnapshotsChanged []string
}

// Empty reports a reload that changed nothing.
func (d IndexDiff) Empty() bool {
	return len(d.VolumesAdded)+len(d.VolumesRemoved)+len(d.VolumesChanged)+
		len(d.SnapshotsAdded)+len(d.SnapshotsRemoved)+len(d.SnapshotsChanged) == 0
}

// beginReload starts recording changes; endReload adopts a listing taken
// after beginReload. Callers run one reload at a time.
func (x *index) beginReload() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.touched = map[string]bool{}
}

// endReload replaces every entry the pool's own operations did not change
// meanwhile by the listing's (nil listings: abandon) and returns the
// differences.
func (x *index) endReload(vols []*Volume, snaps []*Snapshot) IndexDiff {
	x.mu.Lock()
	defer x.mu.Unlock()
	touched := x.touched
	x.touched = nil
	var d IndexDiff
	if vols == nil && snaps == nil {
		return d
	}
	fresh := make(map[string]*Volume, len(vols))
	for _, v := range vols {
		fresh[v.Name] = v
	}
	for name, old := range x.vols {
		if touched[volKey(name)] {
			continue
		}
		if _, ok := fresh[name]; !ok {
			d.VolumesRemoved = append(d.VolumesRemoved, name)
			x.dropVolumeLocked(name)
			continue
		}
		if !sameVolume(old, fresh[name]) {
			d.VolumesChanged = append(d.VolumesChanged, name)
		}
	}
	for name, v := range fresh {
		if touched[volKey(name)] {
			continue
		}
		if _, ok := x.vols[name]; !ok {
			d.VolumesAdded = append(d.VolumesAdded, name)
		}
		x.setVolumeLocked(v)
	}
	freshSnaps := make(map[string]*Snapshot, len(snaps))
	for _, s := range snaps {
		freshSnaps[s.Name] = s
	}
	for name, old := range x.snaps {
		if touched[snapKey(name)] {
			continue
		}
		if s, ok := freshSnaps[name]; !ok {
			d.SnapshotsRemoved = append(d.SnapshotsRemoved, name)
			delete(x.snaps, name)
			x.snapKeys = removeKey(x.snapKeys, name)
		} else if *s != *old {
			d.SnapshotsChanged = append(d.SnapshotsChanged, name)
		}
	}
	for name, s := range freshSnaps {
		if touched[snapKey(name)] {
			continue
		}
		if _, ok := x.snaps[name]; !ok {
			d.SnapshotsAdded = append(d.SnapshotsAdded, name)
			x.snapKeys = insertKey(x.snapKeys, name)
		}
		x.snaps[name] = s
	}
	for _, l := range [][]string{d.VolumesAdded, d.VolumesRemoved, d.VolumesChanged, d.SnapshotsAdded, d.SnapshotsRemoved, d.SnapshotsChanged} {
		sort.Strings(l)
	}
	return d
}

// sameVolume compares what dots records of a volume, not the space it
// uses now.
func sameVolume(a, b *Volume) bool {
	ca, cb := *a, *b
	ca.Used, cb.Used, ca.Available, cb.Available = 0, 0, 0, 0
	if len(ca.Properties) == 0 {
		ca.Properties = nil
	}
	if len(cb.Properties) == 0 {
		cb.Properties = nil
	}
	return reflect.DeepEqual(&ca, &cb)
}
