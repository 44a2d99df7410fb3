package zfs

import (
	"context"
	"errors"

	"github.com/dots-csi/dots/pkg/api"
)

// HasReplSnapshot says whether this pool's copy of volume (its primary, or
// else its replica) holds the replication snapshot snap: whether an
// increment from snap can be sent from here (pkg/replicator asks it
// before choosing a stream's base).
func (p *Pool) HasReplSnapshot(ctx context.Context, volume, snap string) (bool, error) {
	if err := api.ValidateID(volume); err != nil {
		return false, err
	}
	ds := p.replicaDataset(volume)
	if v, ok := p.index.volume(volume); ok {
		ds = v.Dataset
	}
	c, err := p.listCopy(ctx, ds, []string{propType})
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return c.has(snap), nil
}

// VolumesMountpoint is where POOL/dots/volumes is mounted ("" when it is
// not): the manifest's volumesPath, where a local-bind node finds a
// candidate server's copy of a volume. Set once, at Open.
func (p *Pool) VolumesMountpoint() string {
	if mp := p.volumesMountpoint; mp != "none" && mp != "legacy" {
		return mp
	}
	return ""
}
