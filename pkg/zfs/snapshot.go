package zfs

import (
	"github.com/dots-csi/dots/pkg/api"

	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/klog/v2"
)

var snapProps = []string{propType, propReferenced, propCreation, propDeferDestroy, propName, propGroup}

// snapshotFromProps builds a user snapshot; ok is false for internal,
// replication and deferred-destroy snapshots, which users never see.
func snapshotFromProps(full string, p dsProps) (*Snapshot, bool) {
	dataset, name, isSnap := splitSnapshot(full)
	if !isSnap || isInternalSnapshot(name) || isReplicationSnapshot(name) || p.str(propDeferDestroy) == "on" {
		return nil, false
	}
	s := &Snapshot{
		Name: name,
		// Snapshots inherit user properties from their dataset: this is
		// the volume's name even after it moved to the trash.
		SourceVolume: p.str(propName),
		Dataset:      full,
		Size:         p.int(propReferenced),
		// Set on the snapshot itself by a group snapshot, never inherited.
		Group: p.localStr(propGroup),
	}
	if s.SourceVolume == "" {
		s.SourceVolume = lastComponent(dataset)
	}
	if secs := p.int(propCreation); secs > 0 {
		s.CreatedAt = time.Unix(secs, 0).UTC()
	}
	return s, true
}

// readSnapshot reads one snapshot by its full ZFS name.
func (p *Pool) readSnapshot(ctx context.Context, full string) (*Snapshot, error) {
	t, err := p.getProps(ctx, depthSelf, snapProps, full)
	if err != nil {
		return nil, err
	}
	s, ok := snapshotFromProps(full, t.props[full])
	if !ok {
		return nil, fmt.Errorf("snapshot %s: %w", full, ErrNotFound)
	}
	return s, nil
}

// ListSnapshots returns the user snapshots sorted by name, including those
// of deleted volumes still in the trash, from the index.
func (p *Pool) ListSnapshots(_ context.Context) ([]*Snapshot, error) {
	snaps, _ := p.index.snapshotPage("", 0, "")
	return snaps, nil
}

// SnapshotPage returns up to max user snapshots (0: all) named after
// after, of the volume source (any when ""), in name order, and whether
// more may follow.
func (p *Pool) SnapshotPage(after string, max int, source string) ([]*Snapshot, bool) {
	return p.index.snapshotPage(after, max, source)
}

// GetSnapshot finds a user snapshot by name, wherever its volume is, in
// the index.
func (p *Pool) GetSnapshot(_ context.Context, name string) (*Snapshot, error) {
	if err := api.ValidateID(name); err != nil {
		return nil, err
	}
	if s, ok := p.index.snapshot(name); ok {
		return s, nil
	}
	return nil, fmt.Errorf("snapshot %q: %w", name, ErrNotFound)
}

// CreateSnapshot snapshots a live volume. Snapshot names are unique in the
// pool: when one of that name exists (of any volume), it is returned with
// an error wrapping ErrExists. Creates of one name run one at a time;
// snapshots of other names never wait for them.
func (p *Pool) CreateSnapshot(ctx context.Context, volume, name string) (*Snapshot, error) {
	if err := api.ValidateID(volume); err != nil {
		return nil, err
	}
	if err := validateUserSnapshotName(name); err != nil {
		return nil, err
	}
	defer p.snapNames.lock(name)()
	if s, err := p.GetSnapshot(ctx, name); err == nil {
		return s, fmt.Errorf("snapshot %q: %w", name, ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	v, err := p.GetVolume(ctx, volume)
	if err != nil {
		return nil, err
	}
	if err := p.zfsSnapshot(ctx, v.Dataset, name); errors.Is(err, ErrExists) {
		// Not a user snapshot (GetSnapshot found none): a deleted one
		// kept for its clones.
		return nil, fmt.Errorf("%w: snapshot name %q belongs to a deleted snapshot that clones still use; it is free again once they are deleted", ErrBusy, name)
	} else if err != nil {
		return nil, err
	}
	full := v.Dataset + snapshotSeparator + name
	s, err := p.readSnapshot(ctx, full)
	if err != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if derr := p.zfsDestroy(cctx, full, destroyNow); derr != nil {
			klog.ErrorS(derr, "Cleanup after failed snapshot", "snapshot", full)
		}
		return nil, err
	}
	p.index.putSnapshot(s)
	// The snapshot references what the volume held when it was taken.
	p.index.updateVolume(volume, func(v *Volume) { v.Used = s.Size })
	klog.InfoS("Created snapshot", "pool", p.name, "volume", volume, "snapshot", name, "size", s.Size)
	return s, nil
}

// DeleteSnapshot removes a user snapshot. When clones depend on it, it is
// hidden and marked for deferred destruction: ZFS removes it with its last
// clone. Until then its name cannot be used again on the same volume.
func (p *Pool) DeleteSnapshot(ctx context.Context, name string) error {
	err := p.onSnapshot(ctx, name, func(s *Snapshot) error {
		err := p.spacious(ctx, func() error { return p.zfsDestroy(ctx, s.Dataset, destroyNow) })
		switch {
		case err == nil:
			klog.InfoS("Destroyed snapshot", "pool", p.name, "snapshot", name)
		case errors.Is(err, errHasClones):
			if err := p.hideSnapshot(ctx, s); err != nil {
				return err
			}
		default:
			return err
		}
		p.index.dropSnapshot(name)
		p.KickReap()
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		// Gone behind the index's back: it is gone for the index too.
		p.index.dropSnapshot(name)
	}
	return err
}

// snapshotMoves bounds how often onSnapshot follows a snapshot that moved.
const snapshotMoves = 3

// onSnapshot runs op on a user snapshot. A snapshot moves when its volume
// is deleted concurrently (into the trash, with its dataset): an op that
// then finds nothing at the old name looks the snapshot up again, so a
// move is never taken for a delete.
func (p *Pool) onSnapshot(ctx context.Context, name string, op func(*Snapshot) error) error {
	var err error
	for range snapshotMoves {
		var s *Snapshot
		if s, err = p.GetSnapshot(ctx, name); err != nil {
			return err
		}
		if err = op(s); !errors.Is(err, ErrNotFound) {
			return err
		}
		klog.V(2).InfoS("Snapshot moved while in use: looking it up again", "pool", p.name, "snapshot", name, "was", s.Dataset)
	}
	return err
}

// hideSnapshot marks a snapshot that clones depend on for deferred
// destruction, in place: listings skip deferred snapshots, and ZFS destroys
// it with its last clone. It is not renamed: on zfs-fuse a rename unmounts
// the clones, which fails while the NFS server holds them open.
func (p *Pool) hideSnapshot(ctx context.Context, s *Snapshot) error {
	if err := p.spacious(ctx, func() error { return p.zfsDestroy(ctx, s.Dataset, destroyDeferred) }); err != nil {
		return err
	}
	klog.InfoS("Snapshot has clones: hidden until the last one goes", "pool", p.name, "snapshot", s.Name)
	return nil
}
