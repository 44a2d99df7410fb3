package zfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// Replication on the pool (issue 15). A primary is a volume under
// volumes/ like any other, with dots:generation, dots:replicas and
// dots:repl-interval; a replica is POOL/dots/replicas/NAME, never indexed
// or exported; what a stale primary held when it was demoted is kept whole
// under POOL/dots/diverged. Replication snapshots (@dots-repl-UNIXNANO)
// live on both sides; the newest one a replica holds carries the user hold
// dots-repl on both, so an incremental base always exists. Users never see
// them, nor the @dots-diverged-* snapshots.
//
// What zfs-fuse (pool version 23) can and cannot do, and OpenZFS 2.x
// could do instead (not used, so both run the same commands): holds and
// `zfs promote` work; `zfs holds` does not (it needs pyzfs), so holds are
// read as the userrefs property; a held snapshot's destroy fails as
// "busy" on both, so it is released first; `zfs recv` has no -u (OpenZFS
// has), the inherited mountpoint=none keeps replicas unmounted on both;
// no bookmarks (OpenZFS could keep a send base as a bookmark instead of a
// held snapshot) and no resumable receive (OpenZFS: recv -s, send -t): an
// interrupted stream leaves nothing and the next one restarts from the
// held base. A killed recv is finished by zfs-fuse's daemon a moment
// after the command died (see replicaStateOf). Renaming a mounted dataset
// under a mountpoint=none parent fails as busy on zfs-fuse: demotion
// unmounts first.
const (
	datasetReplicas = "replicas"
	datasetDiverged = "diverged"

	// ReplSnapPrefix starts every replication snapshot's name.
	ReplSnapPrefix = "dots-repl-"
	// DivergedSnapPrefix starts the snapshot a demoted stale primary
	// takes of its divergent writes.
	DivergedSnapPrefix = "dots-diverged-"
	// ReplHoldTag is the user hold on the replication snapshots a
	// replica's next increment starts from.
	ReplHoldTag = "dots-repl"

	propGeneration   = "dots:generation"    // uint; absent: 1
	propReplicas     = "dots:replicas"      // JSON []api.Peer; absent: none
	propReplInterval = "dots:repl-interval" // Go duration
	propPrimary      = "dots:primary"       // on a replica: the server that sent it
	propUserRefs     = "userrefs"           // how many user holds a snapshot has
)

// replicaProps are read of a replica (ReplicaState, Receive, promotion).
var replicaProps = []string{propType, propGeneration, propPrimary, propUserRefs, propOrigin}

func (p *Pool) replicasDataset() string { return p.rootDataset() + "/" + datasetReplicas }
func (p *Pool) divergedDataset() string { return p.rootDataset() + "/" + datasetDiverged }
func (p *Pool) replicaDataset(name string) string {
	return p.replicasDataset() + "/" + name
}

// ReplicasMountpoint is not a thing: replicas never mount. Their parent has
// mountpoint=none and canmount=off (like the trash), so a received replica
// costs no FUSE mount (zfs-fuse serves about 1000 for the whole machine)
// and nobody can write to it between two increments; zfs-fuse's recv has no
// -u, and the inherited mountpoint=none is what keeps it from mounting. A
// promotion's rename into volumes/ mounts it.

// isReplicationSnapshot reports the snapshots dots takes for replication
// and divergence: never a user's, never listed as one.
func isReplicationSnapshot(snap string) bool {
	return strings.HasPrefix(snap, ReplSnapPrefix) || strings.HasPrefix(snap, DivergedSnapPrefix)
}

// validateUserSnapshotName refuses a user snapshot name that would be
// taken for a replication one (the api's name rules allow them).
func validateUserSnapshotName(name string) error {
	if err := api.ValidateID(name); err != nil {
		return err
	}
	if isReplicationSnapshot(name) {
		return fmt.Errorf("%w: snapshot name %q: the prefixes %q and %q are dots' own", ErrInvalid, name, ReplSnapPrefix, DivergedSnapPrefix)
	}
	return nil
}

// ReplSnapshotName is the replication snapshot taken at t.
func ReplSnapshotName(t time.Time) string {
	return ReplSnapPrefix + strconv.FormatInt(t.UnixNano(), 10)
}

// ReplSnapshotTime is the time a replication snapshot's name carries.
func ReplSnapshotTime(snap string) (time.Time, bool) {
	s, ok := strings.CutPrefix(snap, ReplSnapPrefix)
	if !ok {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(0, n).UTC(), true
}

// parseGeneration reads dots:generation; absent (a volume made before
// replication existed, or never promoted) is generation 1.
func parseGeneration(s string) (uint64, error) {
	if s == "" {
		return 1, nil
	}
	g, err := strconv.ParseUint(s, 10, 64)
	if err != nil || g == 0 {
		return 0, fmt.Errorf("%w: %s=%q", ErrInvalid, propGeneration, s)
	}
	return g, nil
}

// readReplication fills a volume's replication fields from its properties.
func readReplication(v *Volume, p dsProps) error {
	g, err := parseGeneration(p.localStr(propGeneration))
	if err != nil {
		return err
	}
	v.Generation = g
	v.Replicas = nil
	if s := p.localStr(propReplicas); s != "" {
		if err := json.Unmarshal([]byte(s), &v.Replicas); err != nil {
			return fmt.Errorf("%w: %s=%q: %v", ErrInvalid, propReplicas, s, err)
		}
	}
	v.ReplInterval = 0
	if s := p.localStr(propReplInterval); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%w: %s=%q", ErrInvalid, propReplInterval, s)
		}
		v.ReplInterval = d
	}
	return nil
}

// replicationProps are the properties SetReplicas and promotions write:
// nil values are removed (inherited).
func replicationProps(replicas []api.Peer, interval time.Duration) (map[string]*string, error) {
	out := map[string]*string{propReplicas: nil, propReplInterval: nil}
	if len(replicas) > 0 {
		for _, r := range replicas {
			if r.Server == "" {
				return nil, fmt.Errorf("%w: a replica without a server name", ErrInvalid)
			}
		}
		b, err := json.Marshal(replicas)
		if err != nil {
			return nil, err
		}
		s := string(b)
		out[propReplicas] = &s
	}
	if interval < 0 {
		return nil, fmt.Errorf("%w: replication interval %s", ErrInvalid, interval)
	}
	if interval > 0 {
		s := interval.String()
		out[propReplInterval] = &s
	}
	return out, nil
}

// applyOptional sets the non-nil values and inherits the nil ones that are
// set locally now (cur: the dataset's properties as read).
func (p *Pool) applyOptional(ctx context.Context, ds string, props map[string]*string, cur dsProps) error {
	set := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(props)) {
		v := props[k]
		switch {
		case v != nil && (cur == nil || cur.localStr(k) != *v):
			set[k] = *v
		case v == nil && (cur == nil || cur.localStr(k) != ""):
			if err := p.zfsInherit(ctx, ds, k); err != nil {
				return err
			}
		}
	}
	if len(set) == 0 {
		return nil
	}
	return p.zfsSet(ctx, ds, set)
}

// replSnap is one replication snapshot of a dataset.
type replSnap struct {
	name string // the part after @
	at   time.Time
	held bool
}

// copyListing is one dataset and its snapshots as one `zfs get -d 1` read
// them: the dataset's properties, its replication snapshots oldest first,
// and its other snapshots (never touched here).
type copyListing struct {
	dataset string
	props   dsProps
	repl    []replSnap
	others  []string
	snaps   []string // every snapshot, oldest first (as zfs lists them)
}

func (c *copyListing) newest() (replSnap, bool) {
	if len(c.repl) == 0 {
		return replSnap{}, false
	}
	return c.repl[len(c.repl)-1], true
}

func (c *copyListing) has(snap string) bool {
	return slices.ContainsFunc(c.repl, func(r replSnap) bool { return r.name == snap })
}

// listCopy reads a dataset and its snapshots with props (ErrNotFound when
// the dataset does not exist).
func (p *Pool) listCopy(ctx context.Context, ds string, props []string) (*copyListing, error) {
	t, err := p.getProps(ctx, 1, props, ds)
	if err != nil {
		return nil, err
	}
	return copyFromTable(ds, t)
}

func copyFromTable(ds string, t *propTable) (*copyListing, error) {
	d, ok := t.props[ds]
	if !ok {
		return nil, fmt.Errorf("%s: %w", ds, ErrNotFound)
	}
	c := &copyListing{dataset: ds, props: d}
	for _, n := range t.order {
		parent, snap, isSnap := splitSnapshot(n)
		if !isSnap || parent != ds {
			continue
		}
		c.snaps = append(c.snaps, snap)
		if at, ok := ReplSnapshotTime(snap); ok {
			c.repl = append(c.repl, replSnap{name: snap, at: at, held: t.props[n].int(propUserRefs) > 0})
		} else {
			c.others = append(c.others, snap)
		}
	}
	slices.SortFunc(c.repl, func(a, b replSnap) int { return a.at.Compare(b.at) })
	return c, nil
}

// hold puts the replication hold on ds@snap (already held: fine).
func (p *Pool) hold(ctx context.Context, ds, snap string) error {
	full := ds + snapshotSeparator + snap
	_, err := p.run(ctx, command.Z("hold", ReplHoldTag, full))
	if err = wrapErr("hold "+full, err); errors.Is(err, ErrExists) {
		return nil
	}
	return err
}

// dropReplSnapshot releases and destroys one replication snapshot. One a
// clone depends on (the origin of a diverged copy) stays: ok is false.
func (p *Pool) dropReplSnapshot(ctx context.Context, ds string, s replSnap) (ok bool, err error) {
	full := ds + snapshotSeparator + s.name
	if !strings.HasPrefix(s.name, ReplSnapPrefix) {
		return false, fmt.Errorf("%w: %s is not a replication snapshot", ErrInvalid, full)
	}
	if s.held {
		// A held snapshot's destroy fails as "busy", which would be
		// retried for seconds: release first. Not held (any more): fine.
		_, rerr := p.run(ctx, command.Z("release", ReplHoldTag, full))
		if rerr = wrapErr("release "+full, rerr); rerr != nil && !strings.Contains(rerr.Error(), "no such tag") {
			return false, rerr
		}
	}
	err = p.spacious(ctx, func() error { return p.zfsDestroy(ctx, full, destroyNow) })
	switch {
	case err == nil, errors.Is(err, ErrNotFound):
		return true, nil
	case errors.Is(err, errHasClones):
		klog.V(2).InfoS("Replication snapshot kept: a diverged copy is cloned from it", "snapshot", full)
		return false, nil
	}
	return false, err
}

// pruneRepl drops the replication snapshots of c older than newest, but
// for those in keep. Other snapshots are never touched.
func (p *Pool) pruneRepl(ctx context.Context, c *copyListing, newest time.Time, keep ...string) error {
	var errs []error
	for _, s := range c.repl {
		if !s.at.Before(newest) || slices.Contains(keep, s.name) {
			continue
		}
		if _, err := p.dropReplSnapshot(ctx, c.dataset, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Pool) now() time.Time {
	if p.clock != nil {
		return p.clock()
	}
	return time.Now()
}

// ReplSnapshot takes a replication snapshot of a primary (a live volume)
// and records it in the index: its name and the time it carries.
func (p *Pool) ReplSnapshot(ctx context.Context, volume string) (string, time.Time, error) {
	v, err := p.GetVolume(ctx, volume)
	if err != nil {
		return "", time.Time{}, err
	}
	name := ReplSnapshotName(p.now())
	if err := p.zfsSnapshot(ctx, v.Dataset, name); err != nil {
		return "", time.Time{}, err
	}
	at, _ := ReplSnapshotTime(name)
	p.index.updateVolume(volume, func(v *Volume) {
		if at.After(v.ReplLatestTime) {
			v.ReplLatest, v.ReplLatestTime = name, at
		}
	})
	klog.V(2).InfoS("Replication snapshot", "pool", p.name, "volume", volume, "snapshot", name)
	return name, at, nil
}

// ReplicaState is this pool's copy of a volume: a primary from the index
// (no command), else a replica from one `zfs get -d 1`, else none.
// Diverged copies are not listed here (see DivergedCopies).
func (p *Pool) ReplicaState(ctx context.Context, volume string) (api.VolumeState, error) {
	if err := api.ValidateID(volume); err != nil {
		return api.VolumeState{}, err
	}
	st := api.VolumeState{Volume: volume}
	if v, ok := p.index.volume(volume); ok {
		st.Exists, st.Role, st.Generation = true, api.RolePrimary, v.Generation
		st.Latest, st.LatestTime, st.Interval = v.ReplLatest, v.ReplLatestTime, v.ReplInterval
		return st, nil
	}
	c, err := p.listCopy(ctx, p.replicaDataset(volume), replicaProps)
	if errors.Is(err, ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return replicaStateOf(volume, c)
}

// replicaStateOf describes a replica. A dataset without a replication
// snapshot is no copy: what a killed full receive leaves while zfs-fuse's
// daemon cleans it up.
func replicaStateOf(volume string, c *copyListing) (api.VolumeState, error) {
	st := api.VolumeState{Volume: volume}
	if len(c.repl) == 0 {
		return st, nil
	}
	st.Exists, st.Role = true, api.RoleReplica
	g, err := parseGeneration(c.props.localStr(propGeneration))
	if err != nil {
		return st, fmt.Errorf("replica %s: %w", c.dataset, err)
	}
	st.Generation = g
	if s, ok := c.newest(); ok {
		st.Latest, st.LatestTime = s.name, s.at
	}
	return st, nil
}

// ReplicaNames lists the replicas this pool holds (the manifest's count).
func (p *Pool) ReplicaNames(ctx context.Context) ([]string, error) {
	t, err := p.getProps(ctx, 1, []string{propType}, p.replicasDataset())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range t.order {
		parent, name := splitParent(n)
		if parent == p.replicasDataset() && !strings.HasPrefix(name, recvTempPrefix) && !strings.Contains(n, snapshotSeparator) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// dropAllRepl releases and destroys every replication snapshot of ds and
// reports whether any went.
func (p *Pool) dropAllRepl(ctx context.Context, ds string) (bool, error) {
	c, err := p.listCopy(ctx, ds, []string{propType, propUserRefs})
	if err != nil {
		return false, err
	}
	dropped := false
	for _, s := range c.repl {
		ok, err := p.dropReplSnapshot(ctx, ds, s)
		if err != nil {
			return dropped, err
		}
		dropped = dropped || ok
	}
	return dropped, nil
}
