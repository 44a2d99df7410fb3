// Package testenv prepares the real components integration tests run
// against: the machine-wide zfs-fuse daemon, throw-away pools on sparse
// files, NFS-Ganesha instances and free ports, and cleans up what crashed
// runs left. When something is missing the tests fail loudly; they never
// skip.
package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// Main is an integration test package's TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// It makes sure ZFS answers (starting zfs-fuse, which it leaves running: it
// serves the whole machine), removes pools left by crashed runs, and runs
// the tests.
func Main(m *testing.M) { MainThen(m, nil) }

// MainThen is Main with after run once the tests have ended, before the
// process exits (a benchmark writes its report there); an error from it
// fails the run.
func MainThen(m *testing.M, after func() error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	err := ensureZFS(ctx)
	if err == nil {
		if cerr := CleanStalePools(ctx); cerr != nil {
			// A leftover that resists is reported, not fatal: the tests
			// use fresh pools of their own.
			fmt.Fprintf(os.Stderr, "testenv: warning: %v\n", cerr)
		}
	}
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if after != nil {
		if err := after(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
			code = max(code, 1)
		}
	}
	removeDotsBinary()
	os.Exit(code)
}
