package zfs

import (
	"context"
	"fmt"
	"strconv"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
)

// ExpandVolume raises a volume's capacity to at least capacity bytes.
// Volumes never shrink: asking for no more than the current capacity
// changes nothing, unless an earlier expansion stopped half way (refquota,
// refreservation of a thick volume and dots:capacity are three properties,
// set in one command only where the ZFS flavour can): then this one
// finishes it, so a retry always converges.
func (p *Pool) ExpandVolume(ctx context.Context, name string, capacity int64) (*Volume, error) {
	if err := api.ValidateID(name); err != nil {
		return nil, err
	}
	if err := validateCapacity(capacity); err != nil {
		return nil, err
	}
	v, err := p.GetVolume(ctx, name)
	if err != nil {
		return nil, err
	}
	want := max(capacity, v.Capacity)
	converged := v.Capacity >= want && v.Recorded >= want && (!v.Thick || v.Reserved >= want)
	if converged {
		klog.V(4).InfoS("Expand: already large enough", "volume", name, "capacity", v.Capacity, "asked", capacity)
		return v, nil
	}
	// A thick volume already holds its old reservation; a thin one may come
	// to hold everything it does not yet reference (as of the last usage
	// pass). The check is the create's (see spaceCache).
	need := want - v.Used
	if v.Thick {
		need = want - v.Reserved
	}
	done, err := p.claimSpace(ctx, need, v.Thick, fmt.Sprintf("expanding volume %q", name))
	if err != nil {
		return nil, err
	}
	sz := strconv.FormatInt(want, 10)
	props := map[string]string{propRefquota: sz, propCapacity: sz}
	if v.Thick {
		props[propRefreservation] = sz
	}
	err = p.zfsSet(ctx, v.Dataset, props)
	done(err == nil)
	if err != nil {
		// zfs-fuse sets them one by one: what changed is read back.
		if rv, rerr := p.readVolume(ctx, name); rerr == nil {
			p.index.putVolume(rv)
		}
		return nil, err
	}
	klog.InfoS("Expanded volume", "pool", p.name, "volume", name, "from", v.Capacity, "to", want)
	nv, ok := p.index.updateVolume(name, func(v *Volume) {
		v.Capacity, v.Recorded = want, want
		if v.Thick {
			v.Reserved = want
		}
	})
	if !ok {
		return nil, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	return nv, nil
}
