package zfs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// CLI names a ZFS command-line flavour, as the --zfs-cli flag gives it.
type CLI string

const (
	// CLIAuto detects the flavour: zfs-fuse when `zfs list -p` is refused.
	CLIAuto CLI = "auto"
	// CLIOpenZFS is OpenZFS 2.x, what production runs.
	CLIOpenZFS CLI = "openzfs"
	// CLIZFSFuse is zfs-fuse (pool version 23), what development machines
	// without a ZFS kernel module run.
	CLIZFSFuse CLI = "zfs-fuse"
)

// ParseCLI reads a CLI from a flag.
func ParseCLI(s string) (CLI, error) {
	switch c := CLI(s); c {
	case CLIAuto, CLIOpenZFS, CLIZFSFuse:
		return c, nil
	}
	return "", fmt.Errorf("%w: ZFS CLI %q: want %s, %s or %s", ErrInvalid, s, CLIAuto, CLIOpenZFS, CLIZFSFuse)
}

// Flavor is what the ZFS in use can do beyond what both flavours share.
// Every command dots runs works on both; where OpenZFS can do better, the
// pool asks its Flavor.
type Flavor struct {
	CLI CLI
	// AtomicMultiSet: `zfs set a=1 b=2 DATASET` sets both in one
	// transaction (OpenZFS 0.7+). zfs-fuse takes one property per set.
	AtomicMultiSet bool
	// ExactZpool: `zpool list` and `zpool get` take -p (exact bytes) and
	// know the fragmentation property (OpenZFS 0.7+). zfs-fuse prints
	// sizes rounded to three digits and has no fragmentation.
	ExactZpool bool
	// Multihost: the pool property multihost (OpenZFS 0.7+), whose
	// activity check refuses to import a pool another host still writes.
	// zfs-fuse (pool version 23) has none.
	Multihost bool
	// GrowsOnline: `zpool online -e POOL VDEV` makes a live pool use a vdev
	// that grew (OpenZFS). zfs-fuse accepts the command and the autoexpand
	// property, but takes a vdev's new size only when the pool is imported
	// (measured: a file vdev grown with truncate; see grow.go).
	GrowsOnline bool
	// AtomicMultiSnapshot: `zfs snapshot a@x b@y` takes every named
	// snapshot in one transaction group (OpenZFS). zfs-fuse refuses more
	// than one name; it has only `zfs snapshot -r PARENT@x`, also atomic.
	AtomicMultiSnapshot bool
}

// flavors are the known flavours' features.
var flavors = map[CLI]Flavor{
	CLIOpenZFS: {CLI: CLIOpenZFS, AtomicMultiSet: true, ExactZpool: true, Multihost: true, GrowsOnline: true, AtomicMultiSnapshot: true},
	CLIZFSFuse: {CLI: CLIZFSFuse},
}

// DetectFlavor resolves cli (CLIAuto asks the zfs command) and returns its
// flavour. The choice is logged: it decides which commands run.
func DetectFlavor(ctx context.Context, r command.Runner, cli CLI) (Flavor, error) {
	if _, err := ParseCLI(string(cli)); err != nil {
		return Flavor{}, err
	}
	chosen := cli
	if cli == CLIAuto {
		// zfs-fuse's zfs refuses -p; OpenZFS's accepts it.
		_, err := r.Run(ctx, command.Z("list", "-Hp", "-o", "name", "-d", "0"))
		var ce *command.Error
		switch {
		case err == nil:
			chosen = CLIOpenZFS
		case errors.As(err, &ce) && strings.Contains(ce.Stderr, "invalid option 'p'"):
			chosen = CLIZFSFuse
		default:
			return Flavor{}, fmt.Errorf("detecting the ZFS flavour: %w", err)
		}
	}
	f := flavors[chosen]
	klog.InfoS("ZFS CLI", "flavor", f.CLI, "requested", cli, "atomicMultiSet", f.AtomicMultiSet, "exactZpool", f.ExactZpool,
		"multihost", f.Multihost, "growsOnline", f.GrowsOnline)
	return f, nil
}
