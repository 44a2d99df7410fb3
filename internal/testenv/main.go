// Package testenv prepares the real components integration tests run
// against: the machine-wide zfs-fuse daemon, the go-zfs compatibility shim
// and throw-away pools on sparse files. When something is missing the tests
// fail loudly; they never skip.
package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/fusecompat"
)

// Main is a test package's TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Started as zfs or zpool, the test binary is the fusecompat shim and
// exits. Otherwise it makes sure zfs-fuse runs (and leaves it running: it
// serves the whole machine), removes pools left by crashed runs, selects
// the ZFS CLI in auto mode and runs the tests.
func Main(m *testing.M) {
	if fusecompat.IsShim(os.Args[0]) {
		os.Exit(fusecompat.Main(os.Args))
	}
	shimDir, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if shimDir != "" {
		_ = os.RemoveAll(shimDir)
	}
	os.Exit(code)
}

func setup() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := zfs.EnsureDaemon(ctx); err != nil {
		return "", err
	}
	if err := CleanStalePools(ctx); err != nil {
		// A leftover that resists is reported, not fatal: the tests use
		// fresh pools of their own.
		fmt.Fprintf(os.Stderr, "testenv: warning: %v\n", err)
	}
	shimDir, err := os.MkdirTemp("", "dots-zfs-shim-")
	if err != nil {
		return "", err
	}
	if _, err := zfs.SetupCLI(ctx, zfs.CLIAuto, shimDir); err != nil {
		_ = os.RemoveAll(shimDir)
		return "", err
	}
	return shimDir, nil
}
