package zfs

import (
	"context"
	"fmt"
	"os"
	"sync"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/zfs/fusecompat"
)

// CLI selects how go-zfs talks to ZFS.
type CLI string

const (
	// CLIAuto detects the CLI: zfs-fuse when `zfs list -p` is refused.
	CLIAuto CLI = "auto"
	// CLIOpenZFS runs go-zfs against the zfs/zpool in PATH unchanged.
	CLIOpenZFS CLI = "openzfs"
	// CLIZFSFuse routes go-zfs through the fusecompat shim.
	CLIZFSFuse CLI = "zfs-fuse"
)

// ParseCLI reads a CLI mode from a flag.
func ParseCLI(s string) (CLI, error) {
	switch c := CLI(s); c {
	case CLIAuto, CLIOpenZFS, CLIZFSFuse:
		return c, nil
	}
	return "", fmt.Errorf("%w: ZFS CLI %q: want %s, %s or %s", ErrInvalid, s, CLIAuto, CLIOpenZFS, CLIZFSFuse)
}

// SetupCLI is called once at process start, before any Open. It resolves
// CLIAuto and, for zfs-fuse, enables the fusecompat shim with its symlinks
// in shimDir ("" makes a temporary directory). The executable must call
// fusecompat.Main when started as zfs or zpool. It returns the mode in use.
func SetupCLI(ctx context.Context, mode CLI, shimDir string) (CLI, error) {
	if _, err := ParseCLI(string(mode)); err != nil {
		return "", err
	}
	// PATH is process-wide, so is the choice: the first call decides, later
	// ones (several servers in one process, the local stack) reuse it.
	cliSetup.Lock()
	defer cliSetup.Unlock()
	if cliSetup.chosen != "" {
		if mode != CLIAuto && mode != cliSetup.chosen {
			return "", fmt.Errorf("%w: ZFS CLI %s requested, but this process already uses %s", ErrInvalid, mode, cliSetup.chosen)
		}
		return cliSetup.chosen, nil
	}
	chosen, err := setupCLI(ctx, mode, shimDir)
	if err == nil {
		cliSetup.chosen = chosen
	}
	return chosen, err
}

var cliSetup struct {
	sync.Mutex
	chosen CLI
}

func setupCLI(ctx context.Context, mode CLI, shimDir string) (CLI, error) {
	chosen := mode
	if mode == CLIAuto {
		fuse, err := fusecompat.Detect(ctx)
		if err != nil {
			return "", err
		}
		chosen = CLIOpenZFS
		if fuse {
			chosen = CLIZFSFuse
		}
	}
	if chosen == CLIZFSFuse {
		if shimDir == "" {
			d, err := os.MkdirTemp("", "dots-zfs-shim-")
			if err != nil {
				return "", fmt.Errorf("shim dir: %w", err)
			}
			shimDir = d
		}
		if err := fusecompat.Enable(shimDir); err != nil {
			return "", err
		}
		klog.InfoS("ZFS CLI", "mode", chosen, "requested", mode, "shim", shimDir,
			"zfs", fusecompat.RealBinary(fusecompat.ToolZFS), "zpool", fusecompat.RealBinary(fusecompat.ToolZpool))
		return chosen, nil
	}
	klog.InfoS("ZFS CLI", "mode", chosen, "requested", mode)
	return chosen, nil
}
