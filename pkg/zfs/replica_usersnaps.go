package zfs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"k8s.io/klog/v2"
)

// User snapshots follow a volume to its replicas, so a drain or a
// promotion keeps them. Increments are `zfs send -I BASE SNAP` (every
// snapshot between the two, user snapshots included) and full streams
// `zfs send -R SNAP` (every snapshot up to SNAP, in one stream, with the
// snapshots' user properties). -R also carries the dataset's local
// properties; the receiver overwrites or removes every one a replica must
// not keep (replicaSpecProps). The stream header lists the user
// snapshots the sender holds (UserSnapshot); the receiver destroys a user
// snapshot of its replica only when that list exists and omits it (the
// user deleted it on the primary), and writes each listed one's group.

// UserSnapshot is one user snapshot a primary holds, as a stream header
// lists it.
type UserSnapshot struct {
	Name  string `json:"name"`
	Group string `json:"group,omitempty"` // dots:group, set on the snapshot itself
}

// userSnapProps are read of a copy's snapshots to list or reconcile its
// user snapshots.
var userSnapProps = []string{propType, propDeferDestroy, propGroup, propUserRefs}

// isUserSnapshotName reports the snapshot names users own: neither dots'
// replication snapshots nor its internal ones.
func isUserSnapshotName(snap string) bool {
	return !isReplicationSnapshot(snap) && !isInternalSnapshot(snap)
}

// UserSnapshotsOf lists the user snapshots this pool's primary of volume
// holds, oldest first, read from ZFS (not the index: a snapshot whose
// create has not reached the index yet is in the next stream already, and
// must be listed, or the receiver would drop it). Hidden ones (deleted,
// kept for their clones) are not listed. Never nil.
func (p *Pool) UserSnapshotsOf(ctx context.Context, volume string) ([]UserSnapshot, error) {
	v, err := p.GetVolume(ctx, volume)
	if err != nil {
		return nil, err
	}
	t, err := p.getProps(ctx, 1, userSnapProps, v.Dataset)
	if err != nil {
		return nil, err
	}
	out := []UserSnapshot{}
	for _, n := range t.order {
		ds, snap, isSnap := splitSnapshot(n)
		d := t.props[n]
		if !isSnap || ds != v.Dataset || !isUserSnapshotName(snap) || d.str(propDeferDestroy) == "on" {
			continue
		}
		out = append(out, UserSnapshot{Name: snap, Group: d.localStr(propGroup)})
	}
	return out, nil
}

// userSnapshotsAfter lists the user snapshots of c taken after its
// replication snapshot base.
func (c *copyListing) userSnapshotsAfter(base string) []string {
	var out []string
	seen := false
	for _, snap := range c.snaps {
		switch {
		case snap == base:
			seen = true
		case seen && isUserSnapshotName(snap):
			out = append(out, snap)
		}
	}
	return out
}

// dropUserSnapshotsAfter destroys a replica's user snapshots taken after
// the increment's base: zfs applies an increment only onto its base as the
// newest snapshot. Only those the sender lists go (the increment carries
// them again); with any other, the increment cannot apply and fails.
func (p *Pool) dropUserSnapshotsAfter(ctx context.Context, spec ReceiveSpec, c *copyListing) error {
	if spec.UserSnapshots == nil {
		return nil
	}
	ds := c.dataset
	for _, s := range c.userSnapshotsAfter(spec.Base) {
		if !slices.ContainsFunc(spec.UserSnapshots, func(u UserSnapshot) bool { return u.Name == s }) {
			return fmt.Errorf("%w: replica %s holds user snapshot %q after the increment's base %s, and the primary does not list it", ErrBusy, ds, s, spec.Base)
		}
		if err := p.zfsDestroy(ctx, ds+snapshotSeparator+s, destroyNow); err != nil {
			return err
		}
	}
	return nil
}

// syncUserSnapshots makes a replica's user snapshots those the stream
// header lists: the ones it omits are destroyed (deleted on the primary),
// each listed one gets its group. A header without a list (a sender that
// predates this) changes nothing.
func (p *Pool) syncUserSnapshots(ctx context.Context, spec ReceiveSpec, ds string) error {
	if spec.UserSnapshots == nil {
		return nil
	}
	t, err := p.getProps(ctx, 1, userSnapProps, ds)
	if err != nil {
		return err
	}
	listed := map[string]UserSnapshot{}
	for _, u := range spec.UserSnapshots {
		listed[u.Name] = u
	}
	var errs []error
	for _, n := range t.order {
		parent, snap, isSnap := splitSnapshot(n)
		if !isSnap || parent != ds || !isUserSnapshotName(snap) {
			continue
		}
		u, ok := listed[snap]
		if !ok {
			err := p.zfsDestroy(ctx, n, destroyNow)
			switch {
			case err == nil, errors.Is(err, ErrNotFound):
				klog.V(2).InfoS("Replica's user snapshot destroyed: the primary no longer has it", "snapshot", n)
			default:
				errs = append(errs, err)
			}
			continue
		}
		switch cur := t.props[n].localStr(propGroup); {
		case u.Group != "" && cur != u.Group:
			errs = append(errs, p.zfsSet(ctx, n, map[string]string{propGroup: u.Group}))
		case u.Group == "" && cur != "":
			errs = append(errs, p.zfsInherit(ctx, n, propGroup))
		}
	}
	return errors.Join(errs...)
}
