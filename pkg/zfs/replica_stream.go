package zfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// recvTempPrefix names the dataset a full stream is received into when a
// copy of the volume already exists: the old copy stays whole until the
// new one is complete. "_" keeps it apart from every volume ID.
const recvTempPrefix = "_in-"

// ReceiveSpec is what a replication stream's header says of the volume:
// the replica records it so a promotion serves the volume with the
// primary's settings.
type ReceiveSpec struct {
	Volume     string
	Snapshot   string // the replication snapshot the stream carries
	Base       string // the snapshot the increment starts from; "": a full stream
	Generation uint64
	Primary    string // the sending server
	Capacity   int64
	Thick      bool
	Properties map[string]string // tunables
	Access     *api.Access       // squash and anon ids (nil: the default)
	Created    time.Time         // the volume's creation time
	// UserSnapshots are the user snapshots the sender holds (never nil
	// from this sender, see UserSnapshotsOf); nil: the sender does not
	// list them, and the receiver destroys none.
	UserSnapshots []UserSnapshot
	// Published: the nodes the primary exports the volume to, so that a
	// promoted replica admits them too (in Kubernetes nothing publishes
	// again: the VolumeAttachment stays).
	Published []Publication
}

// ReplicaSpecOf is the header of a stream of v's replication snapshot snap
// from base ("" for a full one), sent by server primary.
func ReplicaSpecOf(v *Volume, primary, snap, base string) ReceiveSpec {
	s := ReceiveSpec{Volume: v.Name, Snapshot: snap, Base: base, Generation: v.Generation, Primary: primary,
		Capacity: v.Capacity, Thick: v.Thick, Properties: v.Properties, Created: v.CreatedAt, Published: v.Published}
	if v.Squash != api.SquashDefault {
		s.Access = &api.Access{Squash: v.Squash, AnonUID: v.AnonUID, AnonGID: v.AnonGID}
	}
	return s
}

func (s ReceiveSpec) validate() error {
	if err := api.ValidateID(s.Volume); err != nil {
		return err
	}
	if _, ok := ReplSnapshotTime(s.Snapshot); !ok {
		return fmt.Errorf("%w: %q is not a replication snapshot", ErrInvalid, s.Snapshot)
	}
	if _, ok := ReplSnapshotTime(s.Base); s.Base != "" && !ok {
		return fmt.Errorf("%w: base %q is not a replication snapshot", ErrInvalid, s.Base)
	}
	if s.Generation == 0 {
		return fmt.Errorf("%w: generation 0", ErrInvalid)
	}
	if _, err := ValidateProperties(s.Properties); err != nil {
		return err
	}
	for _, pub := range s.Published {
		if _, err := api.ParseNodeID(pub.Node); err != nil {
			return err
		}
	}
	if n := len(formatPublished(s.Published)); n > maxPublishedLen {
		return fmt.Errorf("%w: volume %q: %d nodes", ErrTooManyNodes, s.Volume, len(s.Published))
	}
	return validateCapacity(s.Capacity)
}

// sendArgs is `zfs send [-i DS@BASE] DS@SNAP`, or with history (a
// replica's stream, see replica_usersnaps.go) `zfs send -I DS@BASE DS@SNAP`
// (every snapshot in between) and `zfs send -R DS@SNAP` (every snapshot up
// to SNAP).
func sendArgs(ds, base, snap string, history bool) []string {
	args := []string{"send"}
	switch {
	case base != "" && history:
		args = append(args, "-I", ds+snapshotSeparator+base)
	case base != "":
		args = append(args, "-i", ds+snapshotSeparator+base)
	case history:
		args = append(args, "-R")
	}
	return append(args, ds+snapshotSeparator+snap)
}

// Send writes a stream of volume's snapshot snap to w: the increment from
// base, or the whole snapshot when base is "", with the user snapshots
// taken before snap (after base). It sends from the primary
// (volumes/NAME) or, when this pool holds a replica, from it. A writer
// that fails (the receiver went away) ends the send.
func (p *Pool) Send(ctx context.Context, volume, base, snap string, w io.Writer) error {
	if err := api.ValidateID(volume); err != nil {
		return err
	}
	ds := p.replicaDataset(volume)
	if v, ok := p.index.volume(volume); ok {
		ds = v.Dataset
	}
	history := true
	if base == "" {
		// A clone's -R stream needs its origin on the receiver, which a
		// replica never has: a clone's first stream carries no earlier
		// user snapshot (its increments do).
		t, err := p.getProps(ctx, depthSelf, []string{propOrigin}, ds)
		if err != nil {
			return err
		}
		history = t.props[ds].str(propOrigin) == ""
	}
	return p.send(ctx, ds, base, snap, history, w)
}

// SendSnapshot writes a full stream of a user snapshot to w (a clone or
// restore on another server: O(data)).
func (p *Pool) SendSnapshot(ctx context.Context, snapshot string, w io.Writer) error {
	return p.onSnapshot(ctx, snapshot, func(s *Snapshot) error {
		ds, snap, _ := splitSnapshot(s.Dataset)
		return p.send(ctx, ds, "", snap, false, w)
	})
}

func (p *Pool) send(ctx context.Context, ds, base, snap string, history bool, w io.Writer) error {
	c := command.Z(sendArgs(ds, base, snap, history)...)
	c.Stdout = w
	klog.V(4).InfoS("zfs send", "dataset", ds, "base", base, "snapshot", snap)
	_, err := p.run(ctx, c)
	return wrapErr(fmt.Sprintf("send %s@%s (base %q)", ds, snap, base), err)
}

// recv runs `zfs recv -F DS` from r. zfs-fuse's recv has no -u: the
// inherited mountpoint=none keeps a replica unmounted. A stream that ends
// early or a recv that is killed leaves the dataset as it was (ZFS
// applies a stream atomically; neither flavour here keeps a partial
// receive: no -s).
func (p *Pool) recv(ctx context.Context, ds string, r io.Reader) error {
	c := command.Z("recv", "-F", ds)
	c.Stdin = r
	klog.V(4).InfoS("zfs recv", "dataset", ds)
	_, err := p.run(ctx, c)
	return wrapErr("recv "+ds, err)
}

// Receive applies a replication stream to this pool's replica of
// spec.Volume (POOL/dots/replicas/NAME), records the primary's settings on
// it, holds the new snapshot and drops the replica's older replication
// snapshots. A stream older than the replica's generation is refused
// (api.ErrStaleGeneration), so is one for a volume this pool serves as
// primary (api.ErrNotReplica: the caller demotes it first). A stream that
// fails leaves the replica at its previous snapshot.
func (p *Pool) Receive(ctx context.Context, spec ReceiveSpec, r io.Reader) (api.VolumeState, error) {
	if err := spec.validate(); err != nil {
		return api.VolumeState{}, err
	}
	if _, ok := p.index.volume(spec.Volume); ok {
		return api.VolumeState{}, fmt.Errorf("volume %q is a primary here: %w", spec.Volume, api.ErrNotReplica)
	}
	ds := p.replicaDataset(spec.Volume)
	props := append(slices.Clone(replicaProps), replicaSpecKeys(p.tunables)...)
	cur, err := p.listCopy(ctx, ds, props)
	switch {
	case errors.Is(err, ErrNotFound):
		cur = nil
	case err != nil:
		return api.VolumeState{}, err
	}
	if cur != nil && len(cur.repl) == 0 {
		// Half received (see replicaStateOf): nothing to keep.
		if err := p.destroyCopy(ctx, ds); err != nil {
			return api.VolumeState{}, err
		}
		cur = nil
	}
	if cur != nil {
		g, err := parseGeneration(cur.props.localStr(propGeneration))
		if err != nil {
			return api.VolumeState{}, err
		}
		if g > spec.Generation {
			return api.VolumeState{}, fmt.Errorf("volume %q: stream of generation %d, the replica has %d: %w", spec.Volume, spec.Generation, g, api.ErrStaleGeneration)
		}
		if cur.has(spec.Snapshot) {
			// A retry of a stream that was applied: nothing to receive.
			return p.finishReceive(ctx, spec, cur)
		}
	}
	if spec.Base != "" && (cur == nil || !cur.has(spec.Base)) {
		return api.VolumeState{}, fmt.Errorf("volume %q: the replica lacks the increment's base %s: %w", spec.Volume, spec.Base, ErrNotFound)
	}
	target := ds
	if spec.Base == "" && cur != nil {
		// A full stream over an existing replica (no common snapshot):
		// received aside, swapped in once complete.
		target = p.replicaDataset(recvTempPrefix + spec.Volume)
		if err := p.destroyCopy(ctx, target); err != nil {
			return api.VolumeState{}, err
		}
	} else if cur != nil {
		if err := p.prepareIncrement(ctx, cur, spec); err != nil {
			return api.VolumeState{}, err
		}
	}
	if err := p.recv(ctx, target, r); err != nil {
		if target != ds {
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			if derr := p.destroyCopy(cctx, target); derr != nil {
				klog.ErrorS(derr, "Cleanup after a failed full receive", "dataset", target)
			}
		}
		return api.VolumeState{}, err
	}
	if target != ds {
		if err := p.destroyCopy(ctx, ds); err != nil {
			return api.VolumeState{}, err
		}
		if err := p.zfsRename(ctx, target, ds, busyAttempts); err != nil {
			return api.VolumeState{}, err
		}
	}
	after := cur
	if target == ds && cur != nil {
		// An increment added one snapshot, nothing else: no need to list
		// again (a stream that carried another one fails the hold).
		at, _ := ReplSnapshotTime(spec.Snapshot)
		after.repl = append(slices.Clone(cur.repl), replSnap{name: spec.Snapshot, at: at})
	} else {
		if after, err = p.listCopy(ctx, ds, props); err != nil {
			return api.VolumeState{}, err
		}
		if !after.has(spec.Snapshot) {
			return api.VolumeState{}, fmt.Errorf("%w: the stream into %s did not carry %s", ErrInvalid, ds, spec.Snapshot)
		}
	}
	return p.finishReceive(ctx, spec, after)
}

// prepareIncrement makes a replica ready for an increment from spec.Base:
// replication snapshots newer than the base (a sender that did not learn
// the replica got them) would make zfs refuse it, and an expanded
// primary's increment may not fit the old quota.
func (p *Pool) prepareIncrement(ctx context.Context, cur *copyListing, spec ReceiveSpec) error {
	base, _ := ReplSnapshotTime(spec.Base)
	kept := cur.repl[:0:0]
	for _, s := range cur.repl {
		if !s.at.After(base) {
			kept = append(kept, s)
			continue
		}
		if _, err := p.dropReplSnapshot(ctx, cur.dataset, s); err != nil {
			return err
		}
	}
	cur.repl = kept
	if err := p.dropUserSnapshotsAfter(ctx, spec, cur); err != nil {
		return err
	}
	if spec.Capacity > cur.props.int(propRefquota) {
		return p.zfsSet(ctx, cur.dataset, map[string]string{propRefquota: strconv.FormatInt(spec.Capacity, 10)})
	}
	return nil
}

// replicaSpecKeys are the properties a replica records of its primary.
func replicaSpecKeys(tunables []string) []string {
	return append([]string{propName, propCapacity, propThick, propCreated, propRefquota, propRefreservation,
		propSquash, propAnon, propPublished, propExportID, propReplicas, propReplInterval}, tunables...)
}

// finishReceive records spec on the replica c, holds spec.Snapshot and
// drops the older replication snapshots.
func (p *Pool) finishReceive(ctx context.Context, spec ReceiveSpec, c *copyListing) (api.VolumeState, error) {
	props := p.replicaSpecProps(spec)
	// refreservation cannot be inherited: "none" is written only over a
	// reservation; a creation time only when the header has one or the
	// replica none.
	if !spec.Thick && c.props.int(propRefreservation) == 0 {
		delete(props, propRefreservation)
	}
	if spec.Created.IsZero() && c.props.localStr(propCreated) != "" {
		delete(props, propCreated)
	}
	if err := p.applyOptional(ctx, c.dataset, props, c.props); err != nil {
		return api.VolumeState{}, err
	}
	if err := p.hold(ctx, c.dataset, spec.Snapshot); err != nil {
		return api.VolumeState{}, err
	}
	if err := p.syncUserSnapshots(ctx, spec, c.dataset); err != nil {
		// The stream applied: the next one reconciles again.
		klog.ErrorS(err, "Reconciling a replica's user snapshots", "dataset", c.dataset)
	}
	at, _ := ReplSnapshotTime(spec.Snapshot)
	if err := p.pruneRepl(ctx, c, at); err != nil {
		// The new snapshot is held and complete: pruning is retried with
		// the next stream.
		klog.ErrorS(err, "Pruning a replica's older replication snapshots", "dataset", c.dataset)
	}
	klog.V(2).InfoS("Received replication stream", "pool", p.name, "volume", spec.Volume, "snapshot", spec.Snapshot,
		"base", spec.Base, "generation", spec.Generation, "primary", spec.Primary)
	return api.VolumeState{Volume: spec.Volume, Exists: true, Role: api.RoleReplica, Generation: spec.Generation,
		Latest: spec.Snapshot, LatestTime: at}, nil
}

// replicaSpecProps are the properties a replica of spec carries (nil:
// removed). Tunables this ZFS does not know are left out.
func (p *Pool) replicaSpecProps(spec ReceiveSpec) map[string]*string {
	str := func(s string) *string { return &s }
	capacity := strconv.FormatInt(spec.Capacity, 10)
	created := spec.Created
	if created.IsZero() {
		created = p.now()
	}
	out := map[string]*string{
		propName: str(spec.Volume), propCapacity: str(capacity), propRefquota: str(capacity),
		propThick: str(strconv.FormatBool(spec.Thick)), propCreated: str(created.UTC().Format(time.RFC3339Nano)),
		propGeneration: str(strconv.FormatUint(spec.Generation, 10)), propPrimary: str(spec.Primary),
		propRefreservation: str("none"), propSquash: nil, propAnon: nil, propPublished: nil,
		// A full stream (-R) carries the primary's own: a replica has no
		// export id and no replicas of its own.
		propExportID: nil, propReplicas: nil, propReplInterval: nil,
	}
	if pubs := formatPublished(spec.Published); pubs != "" {
		out[propPublished] = str(pubs)
	}
	if spec.Thick {
		out[propRefreservation] = str(capacity)
	}
	if spec.Primary == "" {
		out[propPrimary] = nil
	}
	for k, v := range accessProps(spec.Access) {
		out[k] = str(v)
	}
	for _, k := range p.tunables {
		if v, ok := spec.Properties[k]; ok {
			out[k] = str(v)
		} else {
			out[k] = nil
		}
	}
	return out
}

// ReplicationSent records, on a primary, that every replica listed in
// keep (the newest snapshot each holds) and the one just sent (snap) are
// what increments start from: snap is held, and older replication
// snapshots nobody needs are released and destroyed. Newer ones (taken
// since) and other snapshots are never touched.
func (p *Pool) ReplicationSent(ctx context.Context, volume, snap string, keep []string) error {
	v, err := p.GetVolume(ctx, volume)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("volume %q: %w", volume, api.ErrNotPrimary)
	}
	if err != nil {
		return err
	}
	at, ok := ReplSnapshotTime(snap)
	if !ok {
		return fmt.Errorf("%w: %q is not a replication snapshot", ErrInvalid, snap)
	}
	if err := p.hold(ctx, v.Dataset, snap); err != nil {
		return err
	}
	c, err := p.listCopy(ctx, v.Dataset, []string{propType, propUserRefs})
	if err != nil {
		return err
	}
	return p.pruneRepl(ctx, c, at, keep...)
}

// ReceiveNewVolume creates volume spec.Name from a full stream of another
// server's snapshot (a cross-server clone or restore): received under
// volumes/ with the spec's properties, a new export id and an index entry.
// The received snapshot is destroyed: the new volume starts without
// snapshots, as a local clone would, and its name (the source's user
// snapshot) is not this pool's. A failed stream leaves nothing.
func (p *Pool) ReceiveNewVolume(ctx context.Context, spec VolumeSpec, r io.Reader) (*Volume, error) {
	props, err := validateSpec(spec)
	if err != nil {
		return nil, err
	}
	if v, ok := p.index.volume(spec.Name); ok {
		return v, fmt.Errorf("volume %q: %w", spec.Name, ErrExists)
	}
	if err := p.freeName(ctx, p.volumeDataset(spec.Name)); err != nil {
		return nil, fmt.Errorf("volume %q: %w", spec.Name, err)
	}
	done, err := p.claimSpace(ctx, spec.Capacity, spec.Thick, fmt.Sprintf("volume %q", spec.Name))
	if err != nil {
		return nil, err
	}
	created := false
	defer func() { done(created) }()
	ds := p.volumeDataset(spec.Name)
	if err := p.recv(ctx, ds, r); err != nil {
		return nil, err
	}
	v, err := p.adoptReceived(ctx, spec, props, ds)
	if err != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if derr := p.destroyCopy(cctx, ds); derr != nil {
			klog.ErrorS(derr, "Cleanup after a failed copy; the reconciler's reindex finds it", "dataset", ds)
		}
		return nil, err
	}
	created = true
	klog.InfoS("Created volume from a stream", "pool", p.name, "volume", v.Name, "capacity", v.Capacity, "exportID", v.ExportID)
	return v, nil
}

// adoptReceived turns a received dataset into a volume.
func (p *Pool) adoptReceived(ctx context.Context, spec VolumeSpec, props map[string]string, ds string) (*Volume, error) {
	c, err := p.listCopy(ctx, ds, []string{propType, propUserRefs, propReferenced})
	if err != nil {
		return nil, err
	}
	if n := c.props.int(propReferenced); n > spec.Capacity {
		return nil, fmt.Errorf("%w: capacity %d is smaller than the copied snapshot (%d bytes)", ErrTooSmall, spec.Capacity, n)
	}
	for _, s := range c.others {
		if err := p.zfsDestroy(ctx, ds+snapshotSeparator+s, destroyNow); err != nil {
			return nil, err
		}
	}
	id, err := p.ids.allocate(ctx)
	if err != nil {
		return nil, err
	}
	capacity := strconv.FormatInt(spec.Capacity, 10)
	zprops := map[string]string{propRefquota: capacity, propCapacity: capacity, propName: spec.Name,
		propThick: strconv.FormatBool(spec.Thick), propExportID: strconv.FormatUint(uint64(id), 10),
		propCreated: time.Now().UTC().Format(time.RFC3339Nano)}
	if s := spec.Source.String(); s != "" {
		zprops[propSource] = s
	}
	if spec.Thick {
		zprops[propRefreservation] = capacity
	}
	for k, v := range props {
		zprops[k] = v
	}
	for k, v := range accessProps(spec.Access) {
		zprops[k] = v
	}
	if err := p.zfsSet(ctx, ds, zprops); err != nil {
		return nil, err
	}
	v, err := p.readVolume(ctx, spec.Name)
	if err != nil {
		return nil, err
	}
	p.index.putVolume(v)
	if err := p.ensureMounted(ctx, v); err != nil {
		p.index.dropVolume(spec.Name)
		return nil, err
	}
	if err := applyRootOwner(v, spec.Root); err != nil {
		p.index.dropVolume(spec.Name)
		return nil, err
	}
	return p.GetVolume(ctx, spec.Name)
}
