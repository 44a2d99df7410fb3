package zfs

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"k8s.io/klog/v2"
)

// The emergency reserve: POOL/dots/reserve holds a refreservation nobody
// writes into. When the pool is full, ZFS refuses even the steps of a
// delete (setting a property, creating a mountpoint directory); releasing
// the reserve for a moment lets them run, so a delete or the undo of a
// failed step never fails for lack of space. The reserve is taken back as
// soon as space allows (at once, or by the next maintenance pass).
const datasetReserve = "reserve"

// reserveSize is the reserve of a pool of size bytes: 1%, within 16 MiB
// and 1 GiB.
func reserveSize(size int64) int64 {
	return min(max(size/100, 16<<20), 1<<30)
}

type reserve struct {
	mu   sync.Mutex // one release/restore at a time
	size int64      // the refreservation it should hold; 0 until known
}

func (p *Pool) reserveDataset() string { return p.rootDataset() + "/" + datasetReserve }

// ensureReserve creates the reserve, or takes it back after a release.
// On a full pool it fails with ErrNoSpace and is tried again later.
func (p *Pool) ensureReserve(ctx context.Context) error {
	p.reserve.mu.Lock()
	defer p.reserve.mu.Unlock()
	if p.reserve.size == 0 {
		c, err := p.Capacity(ctx)
		if err != nil {
			return err
		}
		p.reserve.size = reserveSize(c.Size)
	}
	want := strconv.FormatInt(p.reserve.size, 10)
	t, err := p.getProps(ctx, depthSelf, []string{propRefreservation}, p.reserveDataset())
	switch {
	case errors.Is(err, ErrNotFound):
		err = p.zfsCreate(ctx, p.reserveDataset(), map[string]string{
			propMountpoint: "none", propCanmount: "off", propRefreservation: want})
		if err == nil {
			klog.InfoS("Created the pool's emergency reserve", "pool", p.name, "bytes", p.reserve.size)
		}
		return err
	case err != nil:
		return err
	case t.props[p.reserveDataset()].str(propRefreservation) == want:
		return nil
	}
	if err := p.zfsSet(ctx, p.reserveDataset(), map[string]string{propRefreservation: want}); err != nil {
		return err
	}
	klog.InfoS("Took back the pool's emergency reserve", "pool", p.name, "bytes", p.reserve.size)
	return nil
}

// releaseReserve frees the reserve's space. Lowering a reservation works
// on a full pool.
func (p *Pool) releaseReserve(ctx context.Context) error {
	p.reserve.mu.Lock()
	defer p.reserve.mu.Unlock()
	err := p.zfsSet(ctx, p.reserveDataset(), map[string]string{propRefreservation: "none"})
	if err == nil {
		klog.InfoS("Released the pool's emergency reserve: the pool is full", "pool", p.name)
	}
	return err
}

// spacious runs op; if it fails for lack of space, it releases the reserve,
// runs op once more and takes the reserve back if it can. Only steps that
// must not fail on a full pool go through it: those of a delete, and the
// undo of a failed step.
func (p *Pool) spacious(ctx context.Context, op func() error) error {
	err := op()
	if !errors.Is(err, ErrNoSpace) {
		return err
	}
	if rerr := p.releaseReserve(ctx); rerr != nil {
		klog.ErrorS(rerr, "Releasing the emergency reserve", "pool", p.name)
		return err
	}
	err = op()
	if rerr := p.ensureReserve(ctx); rerr != nil {
		klog.InfoS("The emergency reserve waits for free space", "pool", p.name, "reason", rerr.Error())
	}
	return err
}
