package zfs

import (
	"context"
	"sort"
	"strings"
)

// propUsedBySnapshots is the space only a dataset's snapshots hold.
const propUsedBySnapshots = "usedbysnapshots"

// VolumeUsage is one volume's space.
type VolumeUsage struct {
	Name       string // the volume's name (its dataset's last component)
	Used       int64  // used: the dataset, its snapshots and reservation
	Referenced int64  // referenced: what the volume's file system holds
	Quota      int64  // refquota: the volume's size
}

// Usage is the space of every volume and snapshot of the pool.
type Usage struct {
	// Volumes are the live volumes, by name.
	Volumes []VolumeUsage
	// Snapshots counts the ZFS snapshots of dots' datasets: users'
	// snapshots, and those kept for clones (of deleted snapshots, or in
	// the trash).
	Snapshots int
	// SnapshotBytes is the space only snapshots hold (the sum of
	// usedbysnapshots), and TrashBytes what deleted volumes kept for
	// their snapshots still use.
	SnapshotBytes int64
	TrashBytes    int64
	// ReplicationSnapshots counts the replication and diverged snapshots
	// (of primaries, replicas and diverged copies; not in Snapshots), and
	// ReplicaBytes is what replicas and diverged copies use, their
	// snapshots included (not in SnapshotBytes).
	ReplicationSnapshots int
	ReplicaBytes         int64
}

// Usage reads every dataset's space in one `zfs get -r` of POOL/dots.
// Like Stats, it is for a background loop.
func (p *Pool) Usage(ctx context.Context) (Usage, error) {
	t, err := p.getProps(ctx, depthRecursive,
		[]string{propUsed, propReferenced, propRefquota, propUsedBySnapshots, propName, propTrashed}, p.rootDataset())
	if err != nil {
		return Usage{}, err
	}
	u := usageFromProps(t, p.volumesDataset(), p.trashDataset())
	used := make(map[string]int64, len(u.Volumes))
	for _, v := range u.Volumes {
		used[v.Name] = v.Referenced
	}
	p.index.setUsed(used) // what GetVolume reports as Used
	return u, nil
}

func usageFromProps(t *propTable, volumes, trash string) Usage {
	var u Usage
	root, _ := splitParent(volumes)
	replicas, diverged := root+"/"+datasetReplicas, root+"/"+datasetDiverged
	for _, n := range t.order {
		d := t.props[n]
		if ds, snap, ok := splitSnapshot(n); ok {
			if parent, _ := splitParent(ds); isReplicationSnapshot(snap) || parent == replicas || parent == diverged {
				u.ReplicationSnapshots++
			} else {
				u.Snapshots++
			}
			continue
		}
		parent, _ := splitParent(n)
		if parent == replicas || parent == diverged {
			u.ReplicaBytes += d.int(propUsed)
			continue
		}
		u.SnapshotBytes += d.int(propUsedBySnapshots)
		switch {
		case parent == trash, parent == volumes && d.localStr(propTrashed) != "":
			u.TrashBytes += d.int(propUsed) - d.int(propUsedBySnapshots)
		case parent == volumes && d.localStr(propName) != "":
			u.Volumes = append(u.Volumes, VolumeUsage{Name: lastComponent(n),
				Used: d.int(propUsed), Referenced: d.int(propReferenced), Quota: d.int(propRefquota)})
		}
	}
	sort.Slice(u.Volumes, func(i, j int) bool { return u.Volumes[i].Name < u.Volumes[j].Name })
	return u
}

// splitParent splits a dataset name at its last "/".
func splitParent(n string) (string, string) {
	i := strings.LastIndexByte(n, '/')
	if i < 0 {
		return "", n
	}
	return n[:i], n[i+1:]
}
