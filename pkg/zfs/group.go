package zfs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// SnapshotGroup is a crash-consistent group snapshot: one ordinary user
// snapshot per member volume, all taken in one transaction group, each
// carrying the group's name in its dots:group property.
type SnapshotGroup struct {
	Name string
	// Snapshots are the members, in source volume order.
	Snapshots []*Snapshot
}

// groupTmpPrefix names the transient recursive snapshot zfs-fuse takes a
// group with (internal: listings never show it).
const groupTmpPrefix = "_g-"

// groupLockKey keeps group names apart from snapshot names in snapNames:
// no snapshot name starts with "_g/".
func groupLockKey(group string) string { return "_g/" + group }

// GetSnapshotGroup returns a group's members from the index; ErrNotFound
// when it has none.
func (p *Pool) GetSnapshotGroup(_ context.Context, group string) (*SnapshotGroup, error) {
	if err := api.ValidateID(group); err != nil {
		return nil, err
	}
	members := p.index.groupSnapshots(group)
	if len(members) == 0 {
		return nil, fmt.Errorf("group snapshot %q: %w", group, ErrNotFound)
	}
	return &SnapshotGroup{Name: group, Snapshots: members}, nil
}

// CreateSnapshotGroup snapshots volumes atomically: every member in one
// transaction group, so the group is crash-consistent (a write to one
// volume is never in it without the writes to the others that preceded
// it). A group of that name with the same volumes is returned as it is
// (with a nil error); with other volumes, ErrExists.
func (p *Pool) CreateSnapshotGroup(ctx context.Context, group string, volumes []string) (*SnapshotGroup, error) {
	if err := api.ValidateID(group); err != nil {
		return nil, err
	}
	if len(volumes) == 0 {
		return nil, fmt.Errorf("%w: a group snapshot needs at least one volume", ErrInvalid)
	}
	volumes = slices.Sorted(slices.Values(volumes))
	if n := len(slices.Compact(slices.Clone(volumes))); n != len(volumes) {
		return nil, fmt.Errorf("%w: a volume is named twice in group snapshot %q", ErrInvalid, group)
	}
	names := make([]string, len(volumes))
	for i, v := range volumes {
		if err := api.ValidateID(v); err != nil {
			return nil, err
		}
		names[i] = api.GroupMemberID(group, v)
		if err := validateUserSnapshotName(names[i]); err != nil {
			return nil, err
		}
	}
	// The group's lock, then its members' in name order: a plain
	// snapshot create takes one name lock, so no cycle can form.
	defer p.snapNames.lock(groupLockKey(group))()
	for _, n := range slices.Sorted(slices.Values(names)) {
		defer p.snapNames.lock(n)()
	}
	if g, err := p.GetSnapshotGroup(ctx, group); err == nil {
		if !slices.Equal(sourcesOf(g), volumes) {
			return g, fmt.Errorf("%w: group snapshot %q exists of volumes %v, not %v", ErrExists, group, sourcesOf(g), volumes)
		}
		return g, nil
	}
	datasets := make([]string, len(volumes))
	for i, v := range volumes {
		if s, ok := p.index.snapshot(names[i]); ok {
			return nil, fmt.Errorf("%w: snapshot %q (of volume %q) holds the name of group snapshot %q's member", ErrExists, s.Name, s.SourceVolume, group)
		}
		vol, err := p.GetVolume(ctx, v)
		if err != nil {
			return nil, err
		}
		datasets[i] = vol.Dataset
	}
	if err := p.snapshotAtomically(ctx, group, datasets, names); err != nil {
		return nil, err
	}
	g := &SnapshotGroup{Name: group}
	for i, ds := range datasets {
		s, err := p.readSnapshot(ctx, ds+snapshotSeparator+names[i])
		if err != nil {
			return nil, err
		}
		p.index.putSnapshot(s)
		p.index.updateVolume(volumes[i], func(v *Volume) { v.Used = s.Size })
		g.Snapshots = append(g.Snapshots, s)
	}
	klog.InfoS("Created group snapshot", "pool", p.name, "group", group, "volumes", volumes)
	return g, nil
}

func sourcesOf(g *SnapshotGroup) []string {
	out := make([]string, len(g.Snapshots))
	for i, s := range g.Snapshots {
		out[i] = s.SourceVolume
	}
	slices.Sort(out)
	return out
}

// snapshotAtomically takes datasets[i]@names[i] for every i in one
// transaction group. OpenZFS names them all in one command. zfs-fuse takes
// one name per command, but `zfs snapshot -r` snapshots a whole subtree at
// once: it snapshots every volume under a transient name, renames the
// members' snapshots to their names and destroys the rest in one
// recursive destroy. That costs O(volumes in the pool), in three commands.
func (p *Pool) snapshotAtomically(ctx context.Context, group string, datasets, names []string) error {
	props := propArgs(map[string]string{propGroup: group})
	if p.flavor.AtomicMultiSnapshot {
		args := append([]string{"snapshot"}, props...)
		for i, ds := range datasets {
			args = append(args, ds+snapshotSeparator+names[i])
		}
		_, err := p.run(ctx, command.Z(args...))
		return wrapErr("snapshot group "+group, err)
	}
	tmp, err := internalName(groupTmpPrefix)
	if err != nil {
		return err
	}
	root := p.volumesDataset() + snapshotSeparator + tmp
	args := append(append([]string{"snapshot", "-r"}, props...), root)
	if _, err := p.run(ctx, command.Z(args...)); err != nil {
		return wrapErr("snapshot group "+group, err)
	}
	// Whatever happens next, the transient snapshots go.
	defer func() {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		op := "destroy -r " + root
		if err := retryBusy(cctx, op, func() error {
			_, err := p.run(cctx, command.Z("destroy", "-r", root))
			return wrapErr(op, err)
		}); err != nil {
			klog.ErrorS(err, "Transient group snapshots left behind (internal, never listed)", "pool", p.name, "snapshot", root)
		}
	}()
	for i, ds := range datasets {
		// New snapshots have no clones: their rename unmounts nothing.
		if err := p.zfsRename(ctx, ds+snapshotSeparator+tmp, ds+snapshotSeparator+names[i], busyAttempts); err != nil {
			p.undoGroup(ctx, datasets[:i], names[:i])
			return err
		}
	}
	return nil
}

// undoGroup destroys the members renamed before a failure, so no partial
// group stays behind.
func (p *Pool) undoGroup(ctx context.Context, datasets, names []string) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	for i, ds := range datasets {
		if err := p.zfsDestroy(cctx, ds+snapshotSeparator+names[i], destroyNow); err != nil {
			klog.ErrorS(err, "Cleanup after a failed group snapshot", "snapshot", ds+snapshotSeparator+names[i])
		}
	}
}

// DeleteSnapshotGroup deletes a group's members (each as DeleteSnapshot
// does: one with clones is hidden until they go). A group with no members
// left is ErrNotFound.
func (p *Pool) DeleteSnapshotGroup(ctx context.Context, group string) error {
	g, err := p.GetSnapshotGroup(ctx, group)
	if err != nil {
		return err
	}
	defer p.snapNames.lock(groupLockKey(group))()
	var errs []error
	for _, s := range g.Snapshots {
		if err := p.DeleteSnapshot(ctx, s.Name); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	klog.InfoS("Deleted group snapshot", "pool", p.name, "group", group, "members", len(g.Snapshots))
	return nil
}
