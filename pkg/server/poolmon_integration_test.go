//go:build integration

package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/zfs"
)

// TestScheduledScrubOnZFSFuse runs the pool monitor on a real zfs-fuse
// pool: the first refresh reads its space and health, a scrub is started
// when the last one is older than the interval, its end and error count
// are reported, and a pool whose file was partly overwritten while
// exported reports the scrub's errors and the damaged file. The clock the
// monitor compares against is moved instead of waiting an interval.
func TestScheduledScrubOnZFSFuse(t *testing.T) {
	const size = 128 << 20 // small, so the data fills the middle of the file
	tp := testenv.NewTestPool(t, poolPrefix)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool, err := zfs.Open(ctx, tp.Config(testenv.Runner(t), size))
	if err != nil {
		t.Fatal(err)
	}
	// 60 MiB of incompressible data in one file of the root dataset.
	writeRandom(t, filepath.Join(tp.Mountpoint, "data"), 60<<20)

	cfg := OpsConfig{StatsInterval: time.Minute, ScrubInterval: time.Hour}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewPoolMonitor(pool, nil, cfg, reg)
	var skew time.Duration // how far the monitor's clock is ahead
	m.now = func() time.Time { return time.Now().Add(skew) }

	// A new pool: nothing to scrub for an interval after its creation.
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	st, u, _, _ := m.Snapshot()
	if st.Health != zfs.HealthOnline || st.Scan.State != zfs.ScanNone || st.Size < 100<<20 || st.Allocated < 55<<20 ||
		st.Available <= 0 || st.Used < 55<<20 || st.Created.IsZero() || st.SizesExact || st.Fragmentation != -1 {
		t.Fatalf("stats of a fresh pool with 60 MiB: %+v", st)
	}
	if len(u.Volumes) != 0 || u.Snapshots != 0 {
		t.Fatalf("usage of a pool without volumes: %+v", u)
	}
	if n := testutil.ToFloat64(m.scrubsStarted); n != 0 {
		t.Fatalf("a scrub started on a pool created just now")
	}

	// An interval after its creation: one scrub starts, and finishes.
	skew = 2 * time.Hour
	started := time.Now()
	waitScrub := func(what string) zfs.PoolStats {
		t.Helper()
		var st zfs.PoolStats
		poll.Until(t, 2*time.Minute, what, func() error {
			if err := m.Refresh(ctx); err != nil {
				return err
			}
			st, _, _, _ = m.Snapshot()
			if st.Scan.Kind != zfs.ScanScrub || st.Scan.State != zfs.ScanFinished {
				return fmt.Errorf("scan %+v", st.Scan)
			}
			return nil
		})
		return st
	}
	st = waitScrub("the scheduled scrub to finish")
	if n := testutil.ToFloat64(m.scrubsStarted); n != 1 {
		t.Fatalf("%v scrubs started, want 1", n)
	}
	if st.Scan.Errors != 0 || st.DataErrors != 0 || st.Scan.End.Before(started.Add(-time.Second)) {
		t.Fatalf("scrub of a healthy pool: %+v", st)
	}
	wantGathered(t, reg, map[string]float64{
		"dots_pool_scrub_last_errors": 0, "dots_pool_scrub_running": 0, "dots_pool_data_errors": 0,
		"dots_pool_scrub_last_end_timestamp_seconds": float64(st.Scan.End.Unix()),
	})
	t.Logf("pool-scrub: ok scrub=clean end=%s size=%d allocated=%d", st.Scan.End.Format(time.RFC3339), st.Size, st.Allocated)

	// Overwrite 4 MiB in the middle of the pool's file while it is
	// exported, as a failing disk would: the next scrub finds it.
	if err := pool.ExportPool(ctx); err != nil { // retries while zfs-fuse says busy
		t.Fatal(err)
	}
	corrupt(t, tp.Vdev, 30<<20, 4<<20)
	testenv.Zpool(t, "import", "-d", tp.Dir, tp.Name)
	skew += 2 * time.Hour
	st = waitScrub("the scrub of the damaged pool to finish")
	if st.Scan.End.Unix() == 0 || st.Scan.Errors == 0 || st.DataErrors == 0 {
		t.Fatalf("scrub of a damaged pool reports no errors: %+v\n%s", st, testenv.Zpool(t, "status", "-v", tp.Name))
	}
	if n := testutil.ToFloat64(m.scrubsStarted); n != 2 {
		t.Fatalf("%v scrubs started, want 2", n)
	}
	wantGathered(t, reg, map[string]float64{
		"dots_pool_scrub_last_errors": float64(st.Scan.Errors), "dots_pool_data_errors": float64(st.DataErrors),
	})
	t.Logf("pool-scrub: ok scrub=damaged errors=%d data_errors=%d", st.Scan.Errors, st.DataErrors)
}

func writeRandom(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, n); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// corrupt overwrites n bytes of a file at off with random bytes.
func corrupt(t *testing.T, path string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.NewOffsetWriter(f, off), io.LimitReader(rand.Reader, n)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// wantGathered checks single-series gauges by name.
func wantGathered(t *testing.T, reg *prometheus.Registry, want map[string]float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if len(mf.GetMetric()) == 1 {
			got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	var bad []string
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			bad = append(bad, fmt.Sprintf("%s = %v (present %v), want %v", k, g, ok, v))
		}
	}
	if len(bad) > 0 {
		t.Error(strings.Join(bad, "\n"))
	}
}
