package zfs

import (
	"context"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// KickReap asks Maintain to reap the trash soon. Deletes call it instead of
// reaping inside the request: a delete answers once the volume or snapshot
// is gone for the user, not once the space is back.
func (p *Pool) KickReap() {
	select {
	case p.reapKick <- struct{}{}:
	default: // one is pending; it will see this delete too
	}
}

// Maintain runs the pool's housekeeping until ctx ends: reaping the trash
// when a delete asks for it, and every interval anyway (retiring deleted
// volumes that could not be unmounted yet, taking back the emergency
// reserve after the pool was full).
func (p *Pool) Maintain(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		move := false
		select {
		case <-ctx.Done():
			return
		case <-p.reapKick:
		case <-t.C:
			move = true
			if err := p.ensureReserve(ctx); err != nil && ctx.Err() == nil {
				klog.V(2).InfoS("The emergency reserve still waits for free space", "pool", p.name, "reason", err.Error())
			}
		}
		if err := p.reap(ctx, move); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Reaping trash; tried again later", "pool", p.name)
		}
		// Deletes and reaps gave space back: creates check against it.
		if _, err := p.RefreshCapacity(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Reading the pool's free space; tried again later", "pool", p.name)
		}
	}
}

// Audit is what a pass over the whole pool found that does not agree with
// dots' layout. Nothing in it is lost data; each is repaired by Maintain
// or by the server, or is reported for a person to look at.
type Audit struct {
	// Unmounted live volumes: not served until they mount.
	Unmounted []string
	// Trash holds deleted volumes not yet reaped (trashed datasets, in the
	// trash or still under volumes/).
	Trash int
	// Foreign datasets under POOL/dots/volumes that dots did not make
	// (no dots:name): never touched, only reported.
	Foreign []string
	// InternalSnapshots not marked for deferred destruction: an
	// interrupted clone's; the next start marks them.
	InternalSnapshots int
	// ReserveMissing: the emergency reserve is not held (the pool was full).
	ReserveMissing bool
}

// Audit reads the whole layout in one command and reports what disagrees.
func (p *Pool) Audit(ctx context.Context) (Audit, error) {
	var a Audit
	props := []string{propType, propDeferDestroy, propMounted, propTrashed, propName, propRefreservation}
	t, err := p.getProps(ctx, depthRecursive, props, p.rootDataset())
	if err != nil {
		return a, err
	}
	volumes, trash := p.volumesDataset()+"/", p.trashDataset()+"/"
	for _, full := range t.order {
		d := t.props[full]
		if _, snap, ok := splitSnapshot(full); ok {
			if isInternalSnapshot(snap) && d.str(propDeferDestroy) != "on" {
				a.InternalSnapshots++
			}
			continue
		}
		switch {
		case strings.HasPrefix(full, trash):
			a.Trash++
		case !strings.HasPrefix(full, volumes) || strings.Contains(strings.TrimPrefix(full, volumes), "/"):
		case d.localStr(propName) == "":
			a.Foreign = append(a.Foreign, full)
		case d.localStr(propTrashed) != "":
			a.Trash++
		case d.str(propMounted) != "yes":
			a.Unmounted = append(a.Unmounted, lastComponent(full))
		}
	}
	r, ok := t.props[p.reserveDataset()]
	a.ReserveMissing = !ok || r.int(propRefreservation) <= 0
	return a, nil
}
