//go:build integration

package server

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
)

// TestPoolGrowsWithItsFile runs a server on a zfs-fuse pool whose file
// grows, as a pool's PV does when its claim is expanded: while the server
// runs, it notices the larger file at its next interval and tells the pool
// (`zpool online -e`); zfs-fuse takes the new size at the next import, so
// after a restart the pool (zpool list), its free space (zfs get) and the
// capacity the server reports are larger, with the volume it held intact.
// Then a larger --pool-file-size grows the file itself at the start (the
// chart's Filesystem mode). OpenZFS grows the live pool at the first step
// already (Flavor.GrowsOnline); no OpenZFS here to show it.
func TestPoolGrowsWithItsFile(t *testing.T) {
	s := startTestServer(t, func(c *Config) {
		c.PoolFileSize = "256Mi"
		c.ReconcileInterval = 200 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool, vdev := s.cfg.Pool, s.cfg.Vdevs[0]
	vol := s.mustCreate(ctx, createReq("before-growth", 64*mib, nil, nil))
	s.mustWrite(ctx, exportOf(vol), "kept.txt", []byte("kept\n"))
	size0, avail0 := zpoolSize(t, pool), zfsAvailable(t, pool)
	if size0 > 256*mib || avail0 > 256*mib {
		t.Fatalf("a 256 MiB file holds a pool of %d bytes, %d available", size0, avail0)
	}
	online := `dots_zfs_commands_total{outcome="ok",subcommand="online",tool="zpool"}`
	if n := metricValue(t, s.http, online); n != 1 {
		t.Fatalf("%s = %v after the start, want 1 (every vdev is told once)", online, n)
	}

	// 1. The file grows under the running server.
	if err := os.Truncate(vdev, 512*mib); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, time.Minute, "the server tells the pool its file grew", func() error {
		if n := metricValue(t, s.http, online); n != 2 {
			return fmt.Errorf("%s = %v, want 2", online, n)
		}
		return nil
	})
	live := zpoolSize(t, pool)
	t.Logf("zfs-fuse, live pool after zpool online -e: %d bytes (before: %d)", live, size0)

	// 2. Restarted (the pool exported, imported again): larger.
	s.stop()
	s.start()
	size1, avail1 := zpoolSize(t, pool), zfsAvailable(t, pool)
	if size1 < size0+200*mib || avail1 < avail0+200*mib {
		t.Fatalf("after the file grew to 512 MiB and a restart: size %d (was %d), available %d (was %d)", size1, size0, avail1, avail0)
	}
	capResp, err := s.ctrl.GetCapacity(ctx, &csi.GetCapacityRequest{})
	if err != nil || capResp.GetAvailableCapacity() < avail0+200*mib {
		t.Errorf("GetCapacity after growth: %v, %v; want more than %d", capResp, err, avail0+200*mib)
	}
	s.mustRead(ctx, exportOf(vol), "kept.txt", []byte("kept\n"))

	// 3. A larger --pool-file-size: the server grows the file at its start.
	s.stop()
	s.cfg.PoolFileSize = "768Mi"
	s.start()
	if st, err := os.Stat(vdev); err != nil || st.Size() != 768*mib {
		t.Fatalf("pool file after a start with --pool-file-size=768Mi: %v, %v", st, err)
	}
	size2, avail2 := zpoolSize(t, pool), zfsAvailable(t, pool)
	if size2 < size1+200*mib || avail2 < avail1+200*mib {
		t.Fatalf("after --pool-file-size=768Mi: size %d (was %d), available %d (was %d)", size2, size1, avail2, avail1)
	}
	s.mustRead(ctx, exportOf(vol), "kept.txt", []byte("kept\n"))
	fmt.Printf("pool-grow: ok flavor=zfs-fuse size_mib=%d,%d,%d available_mib=%d,%d,%d live_size_mib=%d\n",
		size0>>20, size1>>20, size2>>20, avail0>>20, avail1>>20, avail2>>20, live>>20)
}

// zpoolSize is the pool's SIZE as `zpool list` prints it (zfs-fuse rounds
// to three digits: "506M").
func zpoolSize(t *testing.T, pool string) int64 {
	t.Helper()
	out := strings.TrimSpace(testenv.Zpool(t, "list", "-H", "-o", "size", pool))
	m := regexp.MustCompile(`^([0-9.]+)([KMGT])$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("zpool list -o size %s: %q", pool, out)
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return int64(f * float64(int64(1)<<(10*strings.Index("_KMGT", m[2]))))
}

// zfsAvailable is the pool's free space for volumes, exact.
func zfsAvailable(t *testing.T, pool string) int64 {
	t.Helper()
	out := strings.TrimSpace(testenv.Zfs(t, "get", "-Hp", "-o", "value", "available", pool))
	n, err := strconv.ParseInt(out, 10, 64)
	if err != nil {
		t.Fatalf("zfs get available %s: %q", pool, out)
	}
	return n
}

// metricValue reads one sample of the server's /metrics (0 when absent).
func metricValue(t *testing.T, addr, sample string) float64 {
	t.Helper()
	for _, l := range strings.Split(testenv.Metrics(t, addr), "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	return 0
}
