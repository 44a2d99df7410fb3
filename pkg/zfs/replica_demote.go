package zfs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// Promotion and demotion move a copy between replicas/ and volumes/ by one
// rename: O(1), no data copied. Callers serialize operations on one
// volume, and unexport a primary before demoting it.

// PromoteReplica makes this pool's replica of volume its primary: rolled
// back to the replication snapshot expect (which it must hold: ErrNotFound
// otherwise) or its newest one, renamed into volumes/, with generation,
// replicas and interval recorded, a new export id and an index entry. A
// generation not above the copy's is refused (api.ErrStaleGeneration). A
// retry finds the primary it made and returns it.
func (p *Pool) PromoteReplica(ctx context.Context, volume string, generation uint64, expect string,
	replicas []api.Peer, interval time.Duration) (*Volume, error) {
	if err := api.ValidateID(volume); err != nil {
		return nil, err
	}
	repl, err := replicationProps(replicas, interval)
	if err != nil {
		return nil, err
	}
	if v, ok := p.index.volume(volume); ok {
		switch {
		case v.Generation == generation:
			return v, nil
		case generation < v.Generation:
			return nil, fmt.Errorf("volume %q: generation %d, the primary has %d: %w", volume, generation, v.Generation, api.ErrStaleGeneration)
		}
		// The primary itself promoted again (a controller that lost its
		// answer): it only records the higher generation.
		return p.setReplication(ctx, v, generation, repl)
	}
	ds := p.replicaDataset(volume)
	c, err := p.listCopy(ctx, ds, append(slices.Clone(replicaProps), propExportID))
	if err != nil {
		return nil, fmt.Errorf("replica of %q: %w", volume, err)
	}
	st, err := replicaStateOf(volume, c)
	if err != nil {
		return nil, err
	}
	if generation <= st.Generation {
		return nil, fmt.Errorf("volume %q: generation %d, the replica has %d: %w", volume, generation, st.Generation, api.ErrStaleGeneration)
	}
	target := st.Latest
	if expect != "" {
		target = expect
	}
	if target == "" || !c.has(target) {
		return nil, fmt.Errorf("replica of %q holds no replication snapshot %q: %w", volume, target, ErrNotFound)
	}
	if err := p.rollbackTo(ctx, c, target); err != nil {
		return nil, err
	}
	id, err := p.ids.allocate(ctx)
	if err != nil {
		return nil, err
	}
	gen := strconv.FormatUint(generation, 10)
	exportID := strconv.FormatUint(uint64(id), 10)
	repl[propGeneration], repl[propExportID], repl[propPrimary] = &gen, &exportID, nil
	if err := p.applyOptional(ctx, ds, repl, c.props); err != nil {
		return nil, err
	}
	dest := p.volumeDataset(volume)
	if err := p.freeName(ctx, dest); err != nil {
		return nil, err
	}
	if err := p.zfsRename(ctx, ds, dest, busyAttempts); err != nil {
		return nil, err
	}
	v, err := p.adoptPromoted(ctx, volume)
	if err != nil {
		return nil, err
	}
	klog.InfoS("Promoted replica", "pool", p.name, "volume", volume, "generation", generation, "snapshot", target, "exportID", v.ExportID)
	return v, nil
}

// rollbackTo drops the replication snapshots newer than target (a
// promotion at an older one) and rolls the copy back to target.
func (p *Pool) rollbackTo(ctx context.Context, c *copyListing, target string) error {
	at, _ := ReplSnapshotTime(target)
	for _, s := range c.repl {
		if s.at.After(at) {
			if _, err := p.dropReplSnapshot(ctx, c.dataset, s); err != nil {
				return err
			}
		}
	}
	full := c.dataset + snapshotSeparator + target
	_, err := p.run(ctx, command.Z("rollback", full))
	return wrapErr("rollback "+full, err)
}

// adoptPromoted reads a copy that just became volumes/NAME into the index,
// with the user snapshots it carries, and mounts it.
func (p *Pool) adoptPromoted(ctx context.Context, volume string) (*Volume, error) {
	ds := p.volumeDataset(volume)
	t, err := p.getProps(ctx, 1, append(slices.Clone(p.volProps), propDeferDestroy, propGroup), ds)
	if err != nil {
		return nil, err
	}
	l := p.listingFromProps(t)
	if len(l.vols) != 1 {
		return nil, fmt.Errorf("%w: %s is not a volume after its promotion", ErrInvalid, ds)
	}
	v := l.vols[0]
	p.index.putVolume(v)
	for _, s := range l.snaps {
		p.index.putSnapshot(s)
	}
	if err := p.ensureMounted(ctx, v); err != nil {
		return nil, err
	}
	return p.GetVolume(ctx, volume)
}

// SetReplicas records where a primary replicates to and how often (none:
// replication stops; the replicas are not destroyed).
func (p *Pool) SetReplicas(ctx context.Context, volume string, replicas []api.Peer, interval time.Duration) (*Volume, error) {
	v, err := p.GetVolume(ctx, volume)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("volume %q: %w", volume, api.ErrNotPrimary)
	}
	if err != nil {
		return nil, err
	}
	repl, err := replicationProps(replicas, interval)
	if err != nil {
		return nil, err
	}
	return p.setReplication(ctx, v, v.Generation, repl)
}

// setReplication writes what differs from the index's view of a primary
// (its replication properties, rebuilt as they are stored) and reads the
// volume back.
func (p *Pool) setReplication(ctx context.Context, v *Volume, generation uint64, repl map[string]*string) (*Volume, error) {
	cur := dsProps{}
	if v.Generation != generation {
		gen := strconv.FormatUint(generation, 10)
		repl[propGeneration] = &gen
	}
	if rs, err := replicationProps(v.Replicas, v.ReplInterval); err == nil {
		for k, s := range rs {
			if s != nil {
				cur[k] = propValue{value: *s, source: "local"}
			}
		}
	}
	if err := p.applyOptional(ctx, v.Dataset, repl, cur); err != nil {
		return nil, err
	}
	nv, err := p.readVolume(ctx, v.Name)
	if err != nil {
		return nil, err
	}
	p.index.updateVolume(v.Name, func(x *Volume) {
		x.Generation, x.Replicas, x.ReplInterval = nv.Generation, nv.Replicas, nv.ReplInterval
	})
	return p.GetVolume(ctx, v.Name)
}

// DemoteToReplica turns this pool's primary of volume into a replica of
// primary's (generation: the new primary's): renamed to replicas/NAME and
// out of the index. The caller has unexported it. With keepDivergence (a
// stale primary that may hold writes the new primary lacks), the volume
// is snapshotted (@dots-diverged-gOLD-UNIX) and renamed whole to
// diverged/NAME-gOLD-UNIX, and the replica is a clone of its commonSnap,
// promoted so that it owns the replication snapshots up to commonSnap:
// the new primary's next increment from commonSnap applies. It returns
// the diverged dataset ("" without keepDivergence).
func (p *Pool) DemoteToReplica(ctx context.Context, volume, primary string, generation uint64,
	keepDivergence bool, commonSnap string) (string, error) {
	v, err := p.GetVolume(ctx, volume)
	if err != nil {
		return "", err
	}
	if generation < v.Generation {
		return "", fmt.Errorf("volume %q: demotion to generation %d, the primary has %d: %w", volume, generation, v.Generation, api.ErrStaleGeneration)
	}
	if keepDivergence && commonSnap == "" {
		return "", fmt.Errorf("%w: keeping divergence needs the last common snapshot", ErrInvalid)
	}
	c, err := p.listCopy(ctx, v.Dataset, []string{propType, propUserRefs})
	if err != nil {
		return "", err
	}
	if commonSnap != "" && !c.has(commonSnap) {
		return "", fmt.Errorf("volume %q holds no replication snapshot %q: %w", volume, commonSnap, ErrNotFound)
	}
	// zfs-fuse refuses to rename a mounted dataset under a parent with
	// mountpoint=none ("dataset is busy"): unmount first.
	if err := p.zfsUnmount(ctx, v.Dataset); err != nil && !strings.Contains(err.Error(), "not currently mounted") {
		return "", err
	}
	p.index.dropVolume(volume)
	p.index.dropSnapshotsOf(v.Dataset)
	p.forgetMountError(v.Dataset)
	ds := p.replicaDataset(volume)
	diverged := ""
	if keepDivergence {
		if diverged, err = p.setAside(ctx, v, commonSnap); err != nil {
			return "", err
		}
	} else if err := p.zfsRename(ctx, v.Dataset, ds, busyAttempts); err != nil {
		return "", err
	}
	gen := strconv.FormatUint(generation, 10)
	props := map[string]*string{propGeneration: &gen, propPrimary: &primary, propExportID: nil, propReplicas: nil, propReplInterval: nil, propPublished: nil}
	if err := p.applyOptional(ctx, ds, props, nil); err != nil {
		return diverged, err
	}
	klog.InfoS("Demoted primary to replica", "pool", p.name, "volume", volume, "primary", primary,
		"generation", generation, "diverged", diverged)
	return diverged, nil
}

// setAside keeps a stale primary whole under diverged/ and makes
// replicas/NAME a promoted clone of its commonSnap, carrying the volume's
// settings (a clone has none of its origin's local properties).
func (p *Pool) setAside(ctx context.Context, v *Volume, commonSnap string) (string, error) {
	stamp := fmt.Sprintf("g%d-%d", v.Generation, p.now().Unix())
	snap := DivergedSnapPrefix + stamp
	if err := p.zfsSnapshot(ctx, v.Dataset, snap); err != nil {
		return "", err
	}
	aside := p.divergedDataset() + "/" + v.Name + "-" + stamp
	if err := p.zfsRename(ctx, v.Dataset, aside, busyAttempts); err != nil {
		return "", err
	}
	ds := p.replicaDataset(v.Name)
	spec := ReplicaSpecOf(v, "", commonSnap, "")
	props := map[string]string{}
	for k, s := range p.replicaSpecProps(spec) {
		if s != nil && *s != "" && k != propRefreservation {
			props[k] = *s
		}
	}
	if err := p.zfsClone(ctx, aside+snapshotSeparator+commonSnap, ds, props); err != nil {
		return aside, err
	}
	if _, err := p.run(ctx, command.Z("promote", ds)); err != nil {
		return aside, wrapErr("promote "+ds, err)
	}
	klog.InfoS("Kept a stale primary's divergent writes", "pool", p.name, "volume", v.Name, "dataset", aside, "snapshot", snap, "common", commonSnap)
	return aside, nil
}

// DropReplica destroys this pool's replica of volume, holds and all. A
// primary is refused (api.ErrNotReplica); no replica is not an error.
// Diverged copies cloned from it are kept (promoted off it first).
func (p *Pool) DropReplica(ctx context.Context, volume string) error {
	if err := api.ValidateID(volume); err != nil {
		return err
	}
	if _, ok := p.index.volume(volume); ok {
		return fmt.Errorf("volume %q is a primary here: %w", volume, api.ErrNotReplica)
	}
	if err := p.destroyCopy(ctx, p.replicaDataset(volume)); err != nil {
		return err
	}
	klog.InfoS("Dropped replica", "pool", p.name, "volume", volume)
	return nil
}

// destroyCopy destroys a replica dataset and its snapshots (gone already:
// fine). A diverged copy cloned from one of them is promoted first, so it
// survives.
func (p *Pool) destroyCopy(ctx context.Context, ds string) error {
	if _, err := p.dropAllRepl(ctx, ds); errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	destroy := func() error {
		return p.spacious(ctx, func() error {
			return retryBusy(ctx, "destroy -r "+ds, func() error {
				_, err := p.run(ctx, command.Z("destroy", "-r", ds))
				return wrapErr("destroy -r "+ds, err)
			})
		})
	}
	err := destroy()
	if errors.Is(err, errHasClones) {
		if perr := p.promoteDivergedOff(ctx, ds); perr != nil {
			return perr
		}
		err = destroy()
	}
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// promoteDivergedOff promotes every diverged copy whose origin is a
// snapshot of ds.
func (p *Pool) promoteDivergedOff(ctx context.Context, ds string) error {
	t, err := p.getProps(ctx, 1, []string{propOrigin}, p.divergedDataset())
	if err != nil {
		return err
	}
	for _, n := range t.order {
		if strings.HasPrefix(t.props[n].str(propOrigin), ds+snapshotSeparator) {
			if _, err := p.run(ctx, command.Z("promote", n)); err != nil {
				return wrapErr("promote "+n, err)
			}
		}
	}
	return nil
}

// DivergedCopies lists the datasets kept of volume's divergent writes
// (full names), oldest first.
func (p *Pool) DivergedCopies(ctx context.Context, volume string) ([]string, error) {
	if err := api.ValidateID(volume); err != nil {
		return nil, err
	}
	t, err := p.getProps(ctx, 1, []string{propName}, p.divergedDataset())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range t.order {
		if parent, _ := splitParent(n); parent == p.divergedDataset() && t.props[n].localStr(propName) == volume {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}
