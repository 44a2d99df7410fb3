//go:build integration

package nfs_test

import (
	"bytes"
	"context"
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

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
)

// poolPrefix names this package's test pools: dotsn-PID-RANDOM, so a
// later run can tell a crashed run's pool (dead PID) from a live one.
const poolPrefix = "dotsn-"

func zfsCmd(ctx context.Context, tool string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// destroyPool retries: zfs-fuse reports "busy" for a moment after a
// dataset was last used.
func destroyPool(ctx context.Context, name string) error {
	var err error
	for delay := 50 * time.Millisecond; ; delay *= 2 {
		if _, err = zfsCmd(ctx, "zpool", "destroy", "-f", name); err == nil || delay > 5*time.Second {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
	}
}

// cleanStalePools destroys pools of this package whose creating test
// process is gone, and their backing directories.
func cleanStalePools(ctx context.Context, t *testing.T) {
	out, err := zfsCmd(ctx, "zpool", "list", "-H", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields(out) {
		rest, ok := strings.CutPrefix(name, poolPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue
		}
		t.Logf("destroying stale pool %s of dead process %d", name, pid)
		if err := destroyPool(ctx, name); err != nil {
			t.Logf("stale pool %s: %v", name, err)
		}
		_ = os.RemoveAll(filepath.Join(os.TempDir(), name))
	}
}

// newPool creates a pool on a sparse file and destroys it when the test
// ends. It returns the pool name and its mountpoint.
func newPool(t *testing.T) (string, string) {
	t.Helper()
	if err := exec.Command("pgrep", "-x", "zfs-fuse").Run(); err != nil {
		t.Fatal("zfs-fuse is not running (start it with: zfs-fuse)")
	}
	ctx := ctxFor(t, 2*time.Minute)
	cleanStalePools(ctx, t)
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", poolPrefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(dir)
	img := filepath.Join(dir, "pool.img")
	f, err := os.Create(img)
	if err == nil {
		err = f.Truncate(256 << 20)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	if _, err := zfsCmd(ctx, "zpool", "create", "-m", mnt, name, img); err != nil {
		_ = os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := destroyPool(ctx, name); err != nil {
			t.Errorf("destroying pool: %v", err)
		}
		_ = os.RemoveAll(dir)
	})
	return name, mnt
}

// TestGaneshaZFSQuota exports a zfs-fuse dataset whose refquota is the
// volume size: writes through NFS succeed below it and fail with a quota
// error past it.
func TestGaneshaZFSQuota(t *testing.T) {
	pool, mnt := newPool(t) // registered first, so destroyed after ganesha stops
	ctx := ctxFor(t, 3*time.Minute)
	ds := pool + "/vol"
	if _, err := zfsCmd(ctx, "zfs", "create", "-o", "refquota=8M", ds); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(mnt, "vol")
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Fatalf("dataset not mounted at %s: %v", path, err)
	}

	env := testenv.StartGanesha(t, nil)
	e := nfs.Export{ID: 5, Path: path, Pseudo: "/dots/vol", Clients: testenv.LoopbackClients}
	if err := env.Export(ctx, e); err != nil {
		t.Fatal(err)
	}
	small := bytes.Repeat([]byte{0xa5}, 2<<20)
	if err := env.Client.WriteFile(ctx, e.Pseudo, "small", small); err != nil {
		t.Fatalf("write below the quota: %v", err)
	}
	got, err := env.Client.ReadFile(ctx, e.Pseudo, "small")
	if err != nil || !bytes.Equal(got, small) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	// Four times the quota: ZFS lets a transaction group overshoot a
	// little, never this much.
	big := bytes.Repeat([]byte{0x5a}, 32<<20)
	err = env.Client.WriteFile(ctx, e.Pseudo, "big", big)
	if !errors.Is(err, libnfs.ErrQuota) {
		t.Fatalf("write past the quota = %v, want a quota error", err)
	}
	t.Logf("past the quota: %v", err)
	if !strings.Contains(err.Error(), "DQUOT") {
		t.Errorf("error does not show the NFS quota status: %v", err)
	}
	// The data written before is intact and still readable.
	if got, err := env.Client.ReadFile(ctx, e.Pseudo, "small"); err != nil || !bytes.Equal(got, small) {
		t.Errorf("after the quota error: %d bytes, %v", len(got), err)
	}
	// Unexport before the pool goes away, as the storage server does.
	if err := env.Unexport(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
}
