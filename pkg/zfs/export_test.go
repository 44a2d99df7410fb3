package zfs

import (
	"context"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// DestroyRetrying is `zfs destroy` with the pool's own busy retry, for
// the raw baselines of the integration tests (package zfs_test): the raw
// work retries exactly as DeleteVolume does.
func DestroyRetrying(ctx context.Context, r command.Runner, dataset string) error {
	op := "destroy " + dataset
	return retryBusy(ctx, op, func() error {
		_, err := r.Run(ctx, command.Z("destroy", dataset))
		return wrapErr(op, err)
	})
}
