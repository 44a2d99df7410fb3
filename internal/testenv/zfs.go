package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/devzfs"
	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// testPoolPrefix is what every test pool's name starts with (each
// package's prefix: dotsz, dotsn, dotss, ...).
const testPoolPrefix = "dots"

// DefaultPoolSize is the size of a pool file when a test names none.
const DefaultPoolSize = 1 << 30

var runner struct {
	once sync.Once
	host *command.Host
	err  error
}

// Runner is the command runner tests use for their own zfs and zpool
// commands and for the pools they open: the real binaries, with
// Timeouts' deadlines.
//
// The tests' ZFS is zfs-fuse, so their mounting commands take turns with
// every server's on the host (zfs.SerializeMounts says why).
func Runner(t testing.TB) command.Runner {
	t.Helper()
	r, err := hostRunner()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return zfs.SerializeMounts(r, zfs.DefaultMountLock)
}

// Timeouts are the deadlines of the tests' zfs commands and of the servers
// they start: the production ones, but a changing command gets 90 s, not
// 5 minutes. A test pool's commands take well under a second, and on
// zfs-fuse a mounting command that hangs holds the host's mount turn
// (zfs.SerializeMounts) until its deadline: this one ends before the
// 2-minute wait of another package's test for the turn does, so one hung
// pool fails its own test, not every test on the host.
func Timeouts() command.Timeouts {
	t := command.DefaultTimeouts
	t.Long = 90 * time.Second
	return t
}

func hostRunner() (*command.Host, error) {
	runner.once.Do(func() {
		runner.host, runner.err = command.NewHost(command.HostConfig{Timeouts: Timeouts()})
	})
	return runner.host, runner.err
}

// Zfs runs a zfs command with the test's own runner: the test's view of the
// pool, independent of the code under test.
func Zfs(t testing.TB, args ...string) string {
	t.Helper()
	return runTool(t, command.Z(args...))
}

// Zpool runs a zpool command, like Zfs.
func Zpool(t testing.TB, args ...string) string {
	t.Helper()
	return runTool(t, command.Pool(args...))
}

func runTool(t testing.TB, c command.Cmd) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := Runner(t).Run(ctx, c)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return string(out)
}

// TestPool is the place of a pool a test makes, directly (NewPool) or
// through a storage server it starts. Its name carries the test process's
// pid, so a later run can tell a crashed run's pool from a live one.
type TestPool struct {
	Name       string
	Dir        string // holds the pool file and the mountpoint
	Vdev       string
	Mountpoint string
}

// NewTestPool picks a fresh pool name PREFIX-PID-RANDOM and a directory
// for it, and destroys the pool when the test ends: imported or exported
// (a stopped server exports its pool), whoever created it. prefix must
// start with "dots".
func NewTestPool(t testing.TB, prefix string) TestPool {
	t.Helper()
	if !strings.HasPrefix(prefix, testPoolPrefix) {
		t.Fatalf("testenv: pool prefix %q must start with %q", prefix, testPoolPrefix)
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tp := TestPool{
		Name:       fmt.Sprintf("%s-%d-%s", prefix, os.Getpid(), hex.EncodeToString(b)),
		Dir:        dir,
		Vdev:       filepath.Join(dir, "pool.img"),
		Mountpoint: filepath.Join(dir, "mnt"),
	}
	r := Runner(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := destroyTestPool(ctx, r, tp.Name, dir); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return tp
}

// NewPool creates a fresh pool of size bytes (DefaultPoolSize when 0) on a
// sparse file and opens it; it is destroyed when the test ends.
func NewPool(t testing.TB, prefix string, size int64) *zfs.Pool {
	t.Helper()
	if size <= 0 {
		size = DefaultPoolSize
	}
	tp := NewTestPool(t, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := zfs.Open(ctx, tp.Config(Runner(t), size))
	if err != nil {
		t.Fatalf("testenv: open pool %s: %v", tp.Name, err)
	}
	return p
}

// Config is the zfs.Config that creates (or re-opens) the pool.
func (tp TestPool) Config(r command.Runner, size int64) zfs.Config {
	return zfs.Config{Pool: tp.Name, Vdevs: []string{tp.Vdev}, Mountpoint: tp.Mountpoint, Create: true, FileSize: size, Runner: r}
}

// destroyTestPool destroys a pool whatever state a test left it in: an
// exported one is imported from dir first.
func destroyTestPool(ctx context.Context, r command.Runner, name, dir string) error {
	if !slices.Contains(importedPools(ctx, r), name) && dir != "" {
		if _, err := r.Run(ctx, command.Pool("import", "-d", dir, name)); err != nil {
			return nil // never created, or already gone
		}
	}
	if err := zfs.DestroyImportedPool(ctx, r, name); err != nil {
		return fmt.Errorf("destroying pool %s: %w", name, err)
	}
	return nil
}

func importedPools(ctx context.Context, r command.Runner) []string {
	out, err := r.Run(ctx, command.Pool("list", "-H", "-o", "name"))
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// poolOwner reads the test pid from a name PREFIX-PID-RANDOM.
func poolOwner(name string) (int, bool) {
	f := strings.Split(name, "-")
	if len(f) != 3 || !strings.HasPrefix(f[0], testPoolPrefix) {
		return 0, false
	}
	pid, err := strconv.Atoi(f[1])
	return pid, err == nil && pid > 0
}

// CleanStalePools destroys the imported test pools whose test process is
// gone (a crashed run's), and removes their files.
func CleanStalePools(ctx context.Context) error {
	r, err := hostRunner()
	if err != nil {
		return err
	}
	var errs []error
	for _, pool := range importedPools(ctx, r) {
		pid, ok := poolOwner(pool)
		if !ok || PidAlive(pid) {
			continue
		}
		files := poolFiles(ctx, r, pool)
		fmt.Fprintf(os.Stderr, "testenv: destroying stale pool %s of dead test process %d\n", pool, pid)
		if err := zfs.DestroyImportedPool(ctx, r, pool); err != nil {
			errs = append(errs, fmt.Errorf("destroying stale pool %s: %w", pool, err))
			continue
		}
		for _, f := range files {
			_ = os.Remove(f)
		}
	}
	return errors.Join(errs...)
}

// poolFiles reads the absolute vdev paths of a pool from `zpool status`.
func poolFiles(ctx context.Context, r command.Runner, pool string) []string {
	out, err := r.Run(ctx, command.Pool("status", pool))
	if err != nil {
		return nil
	}
	return vdevFiles(string(out))
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

// ensureZFS starts the zfs-fuse daemon if no ZFS answers.
func ensureZFS(ctx context.Context) error {
	r, err := hostRunner()
	if err != nil {
		return err
	}
	return devzfs.EnsureDaemon(ctx, r)
}
