package zfs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
)

// cleanupTimeout bounds the undo steps of a failed operation, which run
// even when the caller's context has ended.
const cleanupTimeout = 30 * time.Second

func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// CreateVolume creates a volume, empty or cloned from spec.Source. When a
// volume of that name exists, it returns the existing volume and an error
// wrapping ErrExists, so the caller can decide whether the request is a
// retry of the same one. Nothing stays behind when it fails.
func (p *Pool) CreateVolume(ctx context.Context, spec VolumeSpec) (*Volume, error) {
	props, err := validateSpec(spec)
	if err != nil {
		return nil, err
	}
	capacity := spec.Capacity

	if v, ok := p.index.volume(spec.Name); ok {
		// A create that made the dataset but could not mount it left an
		// empty, never exported dataset: mount it now, or fail again.
		if err := p.ensureMounted(ctx, v); err != nil {
			return nil, err
		}
		if err := applyRootOwner(v, spec.Root); err != nil {
			return nil, err
		}
		return v, fmt.Errorf("volume %q: %w", spec.Name, ErrExists)
	}

	if err := p.freeName(ctx, p.volumeDataset(spec.Name)); err != nil {
		return nil, fmt.Errorf("volume %q: %w", spec.Name, err)
	}

	var origin string // snapshot to clone
	var srcVol *Volume
	var used int64 // what the new dataset references: its source's data
	switch spec.Source.Kind {
	case SourceSnapshot:
		s, err := p.GetSnapshot(ctx, spec.Source.Name)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		if capacity < s.Size {
			return nil, fmt.Errorf("%w: capacity %d is smaller than snapshot %q (%d bytes)", ErrTooSmall, capacity, s.Name, s.Size)
		}
		origin, used = s.Dataset, s.Size
	case SourceVolume:
		srcVol, err = p.GetVolume(ctx, spec.Source.Name)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		if capacity < srcVol.Capacity {
			return nil, fmt.Errorf("%w: capacity %d is smaller than source volume %q (%d bytes)", ErrTooSmall, capacity, srcVol.Name, srcVol.Capacity)
		}
		used = srcVol.Used
	}

	done, err := p.claimSpace(ctx, capacity, spec.Thick, fmt.Sprintf("volume %q", spec.Name))
	if err != nil {
		return nil, err
	}
	created := false
	defer func() { done(created) }()
	id, err := p.ids.allocate(ctx)
	if err != nil {
		return nil, err
	}

	zprops := map[string]string{
		propRefquota: strconv.FormatInt(capacity, 10),
		propName:     spec.Name,
		propCapacity: strconv.FormatInt(capacity, 10),
		propThick:    strconv.FormatBool(spec.Thick),
		propExportID: strconv.FormatUint(uint64(id), 10),
		propCreated:  time.Now().UTC().Format(time.RFC3339Nano),
	}
	if s := spec.Source.String(); s != "" {
		zprops[propSource] = s
	}
	if spec.Thick {
		zprops[propRefreservation] = zprops[propRefquota]
	}
	for k, v := range props {
		zprops[k] = v
	}
	for k, v := range accessProps(spec.Access) {
		zprops[k] = v
	}

	ds := p.volumeDataset(spec.Name)
	switch spec.Source.Kind {
	case SourceSnapshot:
		err = p.zfsClone(ctx, origin, ds, zprops)
		if errors.Is(err, ErrNotFound) {
			// The snapshot may have moved with its deleted volume.
			err = p.onSnapshot(ctx, spec.Source.Name, func(s *Snapshot) error { return p.zfsClone(ctx, s.Dataset, ds, zprops) })
		}
	case SourceVolume:
		err = p.cloneVolume(ctx, srcVol, ds, zprops)
	default:
		err = p.zfsCreate(ctx, ds, zprops)
	}
	if errors.Is(err, ErrExists) {
		return p.existingAfterCreate(ctx, spec, err)
	}
	if err != nil {
		return nil, err
	}
	created = true
	// Built from what the create wrote, not read back: the dataset holds
	// exactly these properties, and the rest is inherited.
	v, err := p.createdVolume(ds, zprops, used)
	if err == nil {
		p.index.putVolume(v)
		err = p.ensureMounted(ctx, v)
	}
	if err == nil {
		err = applyRootOwner(v, spec.Root)
	}
	if err != nil {
		// Nothing was ever exported from it: destroy it, so the create
		// leaves nothing behind.
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if derr := p.spacious(cctx, func() error { return p.zfsDestroy(cctx, ds, destroyNow) }); derr != nil {
			klog.ErrorS(derr, "Cleanup after failed create; the reconciler's reindex finds it", "dataset", ds)
		} else {
			created = false
			p.index.dropVolume(spec.Name)
		}
		return nil, err
	}
	klog.InfoS("Created volume", "pool", p.name, "volume", v.Name, "capacity", v.Capacity,
		"thick", v.Thick, "source", v.Source.String(), "exportID", v.ExportID)
	return v, nil
}

// existingAfterCreate answers a create that found its name taken: created
// concurrently (by another process: this one's callers lock the name), a
// dataset an earlier create made but could not mount, or a deleted volume
// another process trashed in place. The pool is read, since the index did
// not know it.
func (p *Pool) existingAfterCreate(ctx context.Context, spec VolumeSpec, cerr error) (*Volume, error) {
	v, err := p.readVolume(ctx, spec.Name)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: a deleted volume still holds the name %q: %v", ErrBusy, spec.Name, cerr)
	}
	if err != nil {
		return nil, cerr
	}
	p.index.putVolume(v)
	if err := p.ensureMounted(ctx, v); err != nil {
		return nil, err
	}
	if err := applyRootOwner(v, spec.Root); err != nil {
		return nil, err
	}
	return v, fmt.Errorf("volume %q: %w", spec.Name, ErrExists)
}

// createdVolume is the Volume a successful create made, from its
// properties: what a read-back would say, but for the space, which the
// index learns from the next usage pass. A create or clone that returned
// success has mounted the dataset at its inherited mountpoint: both exit
// non-zero ("successfully created, but not mounted") when the mount fails,
// and existingAfterCreate then reads the dataset on the retry. No check
// on the file system either: a stat of a FUSE mount waits behind the
// busy zfs-fuse daemon (measured: it cost creates at concurrency 8 half
// their throughput).
func (p *Pool) createdVolume(ds string, zprops map[string]string, used int64) (*Volume, error) {
	props := dsProps{}
	for k, v := range zprops {
		props[k] = propValue{value: v, source: "local"}
	}
	mp := p.volumeMountpoint(lastComponent(ds))
	mounted := "yes"
	if mp == "" {
		mounted = "no" // ensureMounted mounts it and reads where
	}
	props[propMountpoint] = propValue{value: mp, source: "inherited"}
	props[propMounted] = propValue{value: mounted, source: "-"}
	if _, ok := props[propRefreservation]; !ok {
		props[propRefreservation] = propValue{value: "0", source: "default"}
	}
	v, err := volumeFromProps(ds, props, p.tunables)
	if err != nil {
		return nil, err
	}
	if !v.Mounted {
		v.Mountpoint = "" // ensureMounted reads where it mounts
	}
	v.Used = used
	v.Available = v.Capacity - used
	if c, _ := p.CapacityAt(); !v.Thick && c.Available < v.Available {
		v.Available = c.Available
	}
	return v, nil
}

// cloneVolume clones a live volume through an internal snapshot that is
// marked for deferred destruction right away: ZFS removes it by itself
// when the clone is destroyed.
func (p *Pool) cloneVolume(ctx context.Context, src *Volume, ds string, props map[string]string) error {
	snapName, err := internalName(cloneSnapPrefix)
	if err != nil {
		return err
	}
	snap := src.Dataset + snapshotSeparator + snapName
	if err := p.zfsSnapshot(ctx, src.Dataset, snapName); err != nil {
		return err
	}
	// Undo steps get a context of their own from the moment they run: the
	// clone before them may have used up the caller's.
	undo := func(what string, name string) {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if err := p.spacious(cctx, func() error { return p.zfsDestroy(cctx, name, destroyNow) }); err != nil {
			klog.ErrorS(err, "Cleanup after failed clone; the next start finishes it", what, name)
		}
	}
	if err := p.zfsClone(ctx, snap, ds, props); err != nil {
		undo("snapshot", snap)
		return err
	}
	if err := p.zfsDestroy(ctx, snap, destroyDeferred); err != nil {
		undo("dataset", ds)
		undo("snapshot", snap)
		return err
	}
	return nil
}

// GetVolume returns one live volume, from the index (no command). Its Used
// bytes are as of the last usage pass (Usage, the pool monitor's).
func (p *Pool) GetVolume(_ context.Context, name string) (*Volume, error) {
	if err := api.ValidateID(name); err != nil {
		return nil, err
	}
	v, ok := p.index.volume(name)
	if !ok {
		return nil, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	return v, nil
}

// readVolume reads one live volume from the pool itself.
func (p *Pool) readVolume(ctx context.Context, name string) (*Volume, error) {
	ds := p.volumeDataset(name)
	t, err := p.getProps(ctx, depthSelf, p.volProps, ds)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	props, ok := t.props[ds]
	if !ok || props.localStr(propTrashed) != "" {
		return nil, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	return volumeFromProps(ds, props, p.tunables)
}

// ListVolumes returns the live volumes sorted by name, from the index.
// Trashed volumes are gone for the user and are not listed.
func (p *Pool) ListVolumes(_ context.Context) ([]*Volume, error) {
	vols, _ := p.index.volumePage("", 0)
	return vols, nil
}

// VolumePage returns up to max live volumes (0: all) named after after,
// in name order, and whether more follow: a listing in pages reads each
// volume once.
func (p *Pool) VolumePage(after string, max int) ([]*Volume, bool) {
	return p.index.volumePage(after, max)
}

// DeleteVolume removes a volume: one lookup in the index, one destroy; the
// trash is reaped in the background. A volume with snapshots (a user's,
// or the internal one a clone of it depends on: ZFS refuses the destroy)
// moves to the trash, unmounted, so its snapshots stay usable; Reap
// destroys it once its last snapshot is gone.
func (p *Pool) DeleteVolume(ctx context.Context, name string) error {
	v, err := p.GetVolume(ctx, name)
	if err != nil {
		return err
	}
	err = p.spacious(ctx, func() error { return p.zfsDestroy(ctx, v.Dataset, destroyNow) })
	if errors.Is(err, errHasChildren) && v.ReplLatest != "" {
		// Replication snapshots keep nothing a user can reach: a volume
		// that only has those is destroyed, not trashed.
		if dropped, derr := p.dropAllRepl(ctx, v.Dataset); derr != nil {
			return derr
		} else if dropped {
			err = p.spacious(ctx, func() error { return p.zfsDestroy(ctx, v.Dataset, destroyNow) })
		}
	}
	switch {
	case err == nil, errors.Is(err, ErrNotFound):
		p.index.dropVolume(name)
		p.forgetMountError(v.Dataset)
		if v.Source.Kind != SourceNone {
			// A clone's origin snapshot may go with it (deferred destroy),
			// and a deleted volume may wait for exactly that. Other
			// destroys free nothing the trash waits for, and the space
			// they give back is read when a create needs it.
			p.KickReap()
		}
		if err == nil {
			klog.InfoS("Destroyed volume", "pool", p.name, "volume", name)
		}
		return err
	case !errors.Is(err, errHasChildren):
		return err
	}
	if err := p.trashVolume(ctx, v); err != nil {
		return err
	}
	p.KickReap()
	return nil
}

func (p *Pool) snapshotCount(ctx context.Context, dataset string) (int, error) {
	t, err := p.getProps(ctx, 1, []string{propType}, dataset)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range t.order {
		if strings.HasPrefix(name, dataset+snapshotSeparator) {
			n++
		}
	}
	return n, nil
}

// validateSpec checks what a request names for a new volume (its name,
// capacity, properties and source) and returns its validated properties.
func validateSpec(spec VolumeSpec) (map[string]string, error) {
	if err := api.ValidateID(spec.Name); err != nil {
		return nil, err
	}
	if err := validateCapacity(spec.Capacity); err != nil {
		return nil, err
	}
	props, err := ValidateProperties(spec.Properties)
	if err != nil {
		return nil, err
	}
	if err := validateSource(spec.Source); err != nil {
		return nil, err
	}
	return props, nil
}
