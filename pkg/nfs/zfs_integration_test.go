//go:build integration

package nfs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// newPool creates a 256 MiB pool on a sparse file, destroyed when the test
// ends, and returns its name and mountpoint.
func newPool(t *testing.T) (string, string) {
	t.Helper()
	tp := testenv.NewTestPool(t, "dotsn")
	f, err := os.Create(tp.Vdev)
	if err == nil {
		err = f.Truncate(256 << 20)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	testenv.Zpool(t, "create", "-m", tp.Mountpoint, tp.Name, tp.Vdev)
	return tp.Name, tp.Mountpoint
}

// TestGaneshaZFSQuota exports a zfs-fuse dataset whose refquota is the
// volume size: writes through NFS succeed below it and fail with a quota
// error past it.
func TestGaneshaZFSQuota(t *testing.T) {
	pool, mnt := newPool(t) // registered first, so destroyed after ganesha stops
	ctx := ctxFor(t, 3*time.Minute)
	ds := pool + "/vol"
	testenv.Zfs(t, "create", "-o", "refquota=8M", ds)
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
