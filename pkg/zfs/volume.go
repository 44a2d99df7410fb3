package zfs

import (
	"github.com/dots-csi/dots/pkg/api"

	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"
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
	capacity := spec.Capacity

	if v, err := p.GetVolume(ctx, spec.Name); err == nil {
		// A create that made the dataset but could not mount it left an
		// empty, never exported dataset: mount it now, or fail again.
		if err := p.ensureMounted(ctx, v); err != nil {
			return nil, err
		}
		if err := applyRootOwner(v, spec.Root); err != nil {
			return nil, err
		}
		return v, fmt.Errorf("volume %q: %w", spec.Name, ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}

	if err := p.freeName(ctx, p.volumeDataset(spec.Name)); err != nil {
		return nil, fmt.Errorf("volume %q: %w", spec.Name, err)
	}

	var origin string // snapshot to clone
	var srcVol *Volume
	switch spec.Source.Kind {
	case SourceSnapshot:
		s, err := p.GetSnapshot(ctx, spec.Source.Name)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		if capacity < s.Size {
			return nil, fmt.Errorf("%w: capacity %d is smaller than snapshot %q (%d bytes)", ErrTooSmall, capacity, s.Name, s.Size)
		}
		origin = s.Dataset
	case SourceVolume:
		srcVol, err = p.GetVolume(ctx, spec.Source.Name)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		if capacity < srcVol.Capacity {
			return nil, fmt.Errorf("%w: capacity %d is smaller than source volume %q (%d bytes)", ErrTooSmall, capacity, srcVol.Name, srcVol.Capacity)
		}
	}

	pc, err := p.Capacity(ctx)
	if err != nil {
		return nil, err
	}
	if capacity > pc.Available {
		return nil, fmt.Errorf("%w: %d bytes asked, %d available in pool %s", ErrNoSpace, capacity, pc.Available, p.name)
	}
	id, err := p.allocateExportID(ctx)
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
		// Created concurrently under the same name, or a deleted volume
		// another process trashed in place.
		v, gerr := p.GetVolume(ctx, spec.Name)
		if errors.Is(gerr, ErrNotFound) {
			return nil, fmt.Errorf("%w: a deleted volume still holds the name %q: %v", ErrBusy, spec.Name, err)
		}
		if gerr != nil {
			return nil, err
		}
		return v, fmt.Errorf("volume %q: %w", spec.Name, ErrExists)
	}
	if err != nil {
		return nil, err
	}
	v, err := p.GetVolume(ctx, spec.Name)
	if err == nil {
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
			klog.ErrorS(derr, "Cleanup after failed create", "dataset", ds)
		}
		return nil, err
	}
	klog.InfoS("Created volume", "pool", p.name, "volume", v.Name, "capacity", v.Capacity,
		"thick", v.Thick, "source", v.Source.String(), "exportID", v.ExportID)
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

// GetVolume reads one live volume back from the pool.
func (p *Pool) GetVolume(ctx context.Context, name string) (*Volume, error) {
	if err := api.ValidateID(name); err != nil {
		return nil, err
	}
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

// ListVolumes returns the live volumes sorted by name. Trashed volumes are
// gone for the user and are not listed.
func (p *Pool) ListVolumes(ctx context.Context) ([]*Volume, error) {
	parent := p.volumesDataset()
	t, err := p.getProps(ctx, 1, p.volProps, parent)
	if err != nil {
		return nil, err
	}
	names := sortedKeys(t, func(n string, d dsProps) bool {
		return strings.HasPrefix(n, parent+"/") && !strings.Contains(n, snapshotSeparator) && d.localStr(propTrashed) == ""
	})
	out := make([]*Volume, 0, len(names))
	for _, n := range names {
		v, err := volumeFromProps(n, t.props[n], p.tunables)
		if err != nil {
			klog.V(2).InfoS("Skipping dataset dots did not create", "dataset", n, "err", err)
			continue
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteVolume removes a volume. A volume without snapshots is destroyed.
// One with snapshots (a user's, or the internal one a clone of it depends
// on) moves to the trash, unmounted, so its snapshots stay usable; Reap
// destroys it once its last snapshot is gone.
func (p *Pool) DeleteVolume(ctx context.Context, name string) error {
	v, err := p.GetVolume(ctx, name)
	if err != nil {
		return err
	}
	snaps, err := p.snapshotCount(ctx, v.Dataset)
	if err != nil {
		return err
	}
	if snaps == 0 {
		err = p.spacious(ctx, func() error { return p.zfsDestroy(ctx, v.Dataset, destroyNow) })
		if err == nil {
			klog.InfoS("Destroyed volume", "pool", p.name, "volume", name)
			p.forgetMountError(v.Dataset)
			p.KickReap()
			return nil
		}
		if !errors.Is(err, errHasChildren) {
			return err
		}
		// A snapshot was taken meanwhile: trash it instead.
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
