package zfs

import (
	"context"
	"fmt"

	"k8s.io/klog/v2"
)

// ensureMounted mounts a volume's dataset if it is not mounted. A volume is
// only ever exported mounted: an export of an unmounted mountpoint would
// serve the parent dataset's directory, outside the volume's quota and
// snapshots.
func (p *Pool) ensureMounted(ctx context.Context, v *Volume) error {
	if v.Mounted {
		return nil
	}
	// Creating the mountpoint directory needs space in the parent dataset.
	err := p.spacious(ctx, func() error { return p.zfsMount(ctx, v.Dataset) })
	if err != nil {
		p.setMountError(v.Dataset, err)
		return fmt.Errorf("%w: volume %q: %v", ErrNotMounted, v.Name, err)
	}
	t, err := p.getProps(ctx, depthSelf, []string{propMounted, propMountpoint}, v.Dataset)
	if err != nil {
		return err
	}
	d := t.props[v.Dataset]
	if d.str(propMounted) != "yes" {
		return fmt.Errorf("%w: volume %q: mount reported success but the dataset is not mounted", ErrNotMounted, v.Name)
	}
	v.Mounted, v.Mountpoint = true, d.str(propMountpoint)
	p.index.updateVolume(v.Name, func(iv *Volume) { iv.Mounted, iv.Mountpoint = true, v.Mountpoint })
	p.forgetMountError(v.Dataset)
	klog.InfoS("Mounted volume", "pool", p.name, "volume", v.Name, "mountpoint", v.Mountpoint)
	return nil
}

// MountVolume mounts a live volume that is not mounted (one that could not
// be mounted at start, say) and returns it.
func (p *Pool) MountVolume(ctx context.Context, name string) (*Volume, error) {
	v, err := p.GetVolume(ctx, name)
	if err != nil {
		return nil, err
	}
	return v, p.ensureMounted(ctx, v)
}

// MountError says why a live volume is not mounted: the last mount attempt's
// error, or a generic one.
func (p *Pool) MountError(name string) error {
	p.mountMu.Lock()
	defer p.mountMu.Unlock()
	if err := p.mountErrs[p.volumeDataset(name)]; err != nil {
		return err
	}
	return fmt.Errorf("%w: volume %q", ErrNotMounted, name)
}

func (p *Pool) setMountError(ds string, err error) {
	p.mountMu.Lock()
	defer p.mountMu.Unlock()
	p.mountErrs[ds] = err
}

func (p *Pool) forgetMountError(ds string) {
	p.mountMu.Lock()
	defer p.mountMu.Unlock()
	delete(p.mountErrs, ds)
}
