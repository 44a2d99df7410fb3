package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/fusecompat"
)

// testPoolPrefix is what every test pool's name starts with (each
// package's prefix: dotsz, dotsn, dotss, ...).
const testPoolPrefix = "dots"

// propTestPID marks the pools NewPool creates with the test process's pid,
// so a later run can tell a crashed run's pool from a live one.
const propTestPID = "dots:testenv-pid"

// DefaultPoolSize is used by NewPool when size is 0.
const DefaultPoolSize = 1 << 30

// NewPool creates a fresh pool named PREFIX-<random> on a sparse file in a
// temporary directory, mounted below it, and destroys it when the test
// ends. prefix must start with "dots".
func NewPool(t testing.TB, prefix string, size int64) *zfs.Pool {
	t.Helper()
	if !strings.HasPrefix(prefix, testPoolPrefix) {
		t.Fatalf("testenv: pool prefix %q must start with %q", prefix, testPoolPrefix)
	}
	if size <= 0 {
		size = DefaultPoolSize
	}
	dir := t.TempDir()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	cfg := zfs.Config{
		Pool:       prefix + "-" + hex.EncodeToString(b),
		Vdevs:      []string{filepath.Join(dir, "pool.img")},
		Mountpoint: filepath.Join(dir, "mnt"),
		Create:     true,
		FileSize:   size,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := zfs.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("testenv: open pool %s: %v", cfg.Pool, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := p.DestroyPool(ctx); err != nil && !errors.Is(err, zfs.ErrNotFound) {
			t.Errorf("testenv: destroy pool %s: %v", cfg.Pool, err)
		}
	})
	if _, err := run(ctx, fusecompat.ToolZFS, "set", propTestPID+"="+strconv.Itoa(os.Getpid()), cfg.Pool); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// CleanStalePools destroys test pools (named dots*) left behind by crashed
// runs: those whose backing file is gone, and those NewPool made for a
// process that no longer exists (their files are removed too).
func CleanStalePools(ctx context.Context) error {
	out, err := run(ctx, fusecompat.ToolZpool, "list", "-H", "-o", "name")
	if err != nil {
		return err
	}
	var errs []error
	for _, pool := range strings.Fields(out) {
		if !strings.HasPrefix(pool, testPoolPrefix) {
			continue
		}
		status, err := run(ctx, fusecompat.ToolZpool, "status", pool)
		if err != nil {
			continue // exported or destroyed meanwhile
		}
		files := vdevFiles(status)
		reason := ""
		for _, f := range files {
			if _, err := os.Stat(f); os.IsNotExist(err) {
				reason = "backing file " + f + " is gone"
			}
		}
		removeFiles := false
		if reason == "" {
			pidOut, err := run(ctx, fusecompat.ToolZFS, "get", "-H", "-s", "local", "-o", "value", propTestPID, pool)
			if pid, perr := strconv.Atoi(strings.TrimSpace(pidOut)); err == nil && perr == nil && !pidAlive(pid) {
				reason = fmt.Sprintf("its test process %d is gone", pid)
				removeFiles = true
			}
		}
		if reason == "" {
			continue
		}
		fmt.Fprintf(os.Stderr, "testenv: destroying stale pool %s: %s\n", pool, reason)
		if err := destroyPool(ctx, pool); err != nil {
			errs = append(errs, fmt.Errorf("destroying stale pool %s: %w", pool, err))
			continue
		}
		if removeFiles {
			for _, f := range files {
				_ = os.Remove(f)
			}
		}
	}
	return errors.Join(errs...)
}

// destroyPool runs `zpool destroy -f`, retrying while zfs-fuse reports the
// pool busy (it does for a moment after mounts change).
func destroyPool(ctx context.Context, pool string) error {
	var err error
	for delay := 50 * time.Millisecond; ; delay *= 2 {
		if _, err = run(ctx, fusecompat.ToolZpool, "destroy", "-f", pool); err == nil || !strings.Contains(err.Error(), "busy") || delay > 2*time.Second {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
	}
}

// vdevFiles reads the absolute vdev paths from `zpool status` output.
func vdevFiles(status string) []string {
	var out []string
	inConfig := false
	for _, l := range strings.Split(status, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "config:"):
			inConfig = true
		case strings.HasPrefix(t, "errors:"):
			inConfig = false
		case inConfig && strings.HasPrefix(t, "/"):
			out = append(out, strings.Fields(t)[0])
		}
	}
	return out
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// run runs the real zfs or zpool (never the shim) and returns stdout.
func run(ctx context.Context, tool string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, fusecompat.RealBinary(tool), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
