package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
)

// fakeStatsPool answers the monitor from fields a test sets.
type fakeStatsPool struct {
	mu       sync.Mutex
	flavor   zfs.Flavor
	stats    zfs.PoolStats
	statsErr error
	usage    zfs.Usage
	usageErr error
	scrubErr error
	scrubs   int
}

func (p *fakeStatsPool) Name() string       { return "tank" }
func (p *fakeStatsPool) Flavor() zfs.Flavor { return p.flavor }
func (p *fakeStatsPool) Stats(context.Context) (zfs.PoolStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.statsErr != nil {
		return zfs.PoolStats{Health: p.stats.Health}, p.statsErr
	}
	return p.stats, nil
}
func (p *fakeStatsPool) Usage(context.Context) (zfs.Usage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.usage, p.usageErr
}
func (p *fakeStatsPool) Scrub(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.scrubErr != nil {
		return p.scrubErr
	}
	p.scrubs++
	p.stats.Scan = zfs.Scan{Kind: zfs.ScanScrub, State: zfs.ScanRunning}
	return nil
}

// clock is a settable time for the monitor.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestMonitor(t *testing.T, pool *fakeStatsPool, cfg OpsConfig, st func() nfs.Status) (*PoolMonitor, *prometheus.Registry, *clock) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewPoolMonitor(pool, st, cfg, reg)
	c := &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	m.now, m.created = c.now, c.now()
	return m, reg, c
}

// wantMetrics compares the named families with what the registry gathers.
func wantMetrics(t *testing.T, reg *prometheus.Registry, text string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(text), names...); err != nil {
		t.Error(err)
	}
}

func TestPoolMonitorMetrics(t *testing.T) {
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ended := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	pool := &fakeStatsPool{flavor: zfs.Flavor{CLI: zfs.CLIOpenZFS, ExactZpool: true},
		stats: zfs.PoolStats{Health: zfs.HealthDegraded, Size: 1000, Allocated: 850, Free: 150, SizesExact: true, Fragmentation: 12,
			Used: 800, Available: 100, Created: created, DataErrors: 2,
			Scan: zfs.Scan{Kind: zfs.ScanScrub, State: zfs.ScanFinished, End: ended, Errors: 3}},
		usage: zfs.Usage{Snapshots: 4, SnapshotBytes: 40, TrashBytes: 7,
			Volumes: []zfs.VolumeUsage{{Name: "a", Used: 10, Referenced: 8, Quota: 100}, {Name: "b", Used: 30, Referenced: 20, Quota: 200}}}}
	nfsStatus := nfs.Status{Up: true, State: "running", Restarts: 2, Reloads: 5, Exports: 2, BusPid: 77,
		ExportChanges: map[nfs.ChangeKey]int{{Method: "dbus", Outcome: "ok"}: 40, {Method: "dbus", Outcome: "error"}: 1, {Method: "sighup", Outcome: "ok"}: 1}}
	m, reg, c := newTestMonitor(t, pool, OpsConfig{StatsInterval: time.Minute}, func() nfs.Status { return nfsStatus })

	// Before the first refresh: only how stale that is, and the NFS server.
	c.add(5 * time.Second)
	wantMetrics(t, reg, `
# HELP dots_pool_stats_age_seconds Seconds since the pool's metrics were last read completely (since the server started, before the first time).
# TYPE dots_pool_stats_age_seconds gauge
dots_pool_stats_age_seconds{pool="tank"} 5
`, "dots_pool_stats_age_seconds", "dots_pool_size_bytes", "dots_pool_health")

	if err := m.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.add(2 * time.Second)
	wantMetrics(t, reg, `
# HELP dots_pool_allocated_bytes Raw space allocated in the pool (zpool list ALLOC).
# TYPE dots_pool_allocated_bytes gauge
dots_pool_allocated_bytes{pool="tank"} 850
# HELP dots_pool_fragmentation_ratio Fragmentation of the pool's free space, 0..1 (zpool list FRAG). OpenZFS only: absent on zfs-fuse.
# TYPE dots_pool_fragmentation_ratio gauge
dots_pool_fragmentation_ratio{pool="tank"} 0.12
# HELP dots_pool_health 1 for the pool's state as zpool reports it (ONLINE, DEGRADED, FAULTED, OFFLINE, REMOVED, UNAVAIL, SUSPENDED), 0 for the others.
# TYPE dots_pool_health gauge
dots_pool_health{pool="tank",state="DEGRADED"} 1
dots_pool_health{pool="tank",state="FAULTED"} 0
dots_pool_health{pool="tank",state="OFFLINE"} 0
dots_pool_health{pool="tank",state="ONLINE"} 0
dots_pool_health{pool="tank",state="REMOVED"} 0
dots_pool_health{pool="tank",state="SUSPENDED"} 0
dots_pool_health{pool="tank",state="UNAVAIL"} 0
# HELP dots_pool_info The pool and its ZFS flavour (zfs_cli: openzfs or zfs-fuse); sizes=exact where zpool prints bytes (OpenZFS), rounded where it prints three digits (zfs-fuse). Always 1.
# TYPE dots_pool_info gauge
dots_pool_info{pool="tank",sizes="exact",zfs_cli="openzfs"} 1
# HELP dots_pool_scrub_last_end_timestamp_seconds When the last scrub ended (finished or canceled), in Unix seconds; absent if none is known.
# TYPE dots_pool_scrub_last_end_timestamp_seconds gauge
dots_pool_scrub_last_end_timestamp_seconds{pool="tank"} `+fmt.Sprint(ended.Unix())+`
# HELP dots_pool_scrub_last_errors Errors the last finished scrub found (zpool status: with N errors).
# TYPE dots_pool_scrub_last_errors gauge
dots_pool_scrub_last_errors{pool="tank"} 3
# HELP dots_pool_stats_age_seconds Seconds since the pool's metrics were last read completely (since the server started, before the first time).
# TYPE dots_pool_stats_age_seconds gauge
dots_pool_stats_age_seconds{pool="tank"} 2
# HELP dots_volume_used_bytes A volume's used bytes (its data, snapshots and reservation).
# TYPE dots_volume_used_bytes gauge
dots_volume_used_bytes{volume="a"} 10
dots_volume_used_bytes{volume="b"} 30
# HELP dots_volume_series_aggregated Volumes beyond --metrics-max-volumes, summed under volume="_other" instead of series of their own.
# TYPE dots_volume_series_aggregated gauge
dots_volume_series_aggregated{pool="tank"} 0
# HELP dots_ganesha_restarts_total Unexpected exits of NFS-Ganesha the server recovered from.
# TYPE dots_ganesha_restarts_total counter
dots_ganesha_restarts_total 2
# HELP dots_ganesha_up 1 while NFS-Ganesha runs and serves the exports.
# TYPE dots_ganesha_up gauge
dots_ganesha_up 1
# HELP dots_ganesha_dbus_up 1 while the private dbus-daemon of NFS-Ganesha's export manager runs.
# TYPE dots_ganesha_dbus_up gauge
dots_ganesha_dbus_up 1
# HELP dots_ganesha_export_changes_total Export changes by how they reached NFS-Ganesha: method dbus (one export manager call each) with outcome ok, error (the call failed: SIGHUP took over), unavailable (no bus) or batch (too many at once for calls); method sighup (a reload of every export) with outcome ok or error.
# TYPE dots_ganesha_export_changes_total counter
dots_ganesha_export_changes_total{method="dbus",outcome="batch"} 0
dots_ganesha_export_changes_total{method="dbus",outcome="error"} 1
dots_ganesha_export_changes_total{method="dbus",outcome="ok"} 40
dots_ganesha_export_changes_total{method="dbus",outcome="unavailable"} 0
dots_ganesha_export_changes_total{method="sighup",outcome="error"} 0
dots_ganesha_export_changes_total{method="sighup",outcome="ok"} 1
# HELP dots_nfs_exports Exports the NFS server serves.
# TYPE dots_nfs_exports gauge
dots_nfs_exports 2
# HELP dots_snapshots ZFS snapshots of dots' datasets, including those kept for clones.
# TYPE dots_snapshots gauge
dots_snapshots{pool="tank"} 4
# HELP dots_pool_data_errors Permanent errors in files that zpool status reports (errors: N data errors; zpool status -v names them).
# TYPE dots_pool_data_errors gauge
dots_pool_data_errors{pool="tank"} 2
`, "dots_pool_allocated_bytes", "dots_pool_fragmentation_ratio", "dots_pool_health", "dots_pool_info",
		"dots_pool_scrub_last_end_timestamp_seconds", "dots_pool_scrub_last_errors", "dots_pool_stats_age_seconds",
		"dots_volume_used_bytes", "dots_volume_series_aggregated", "dots_ganesha_restarts_total", "dots_ganesha_up",
		"dots_ganesha_dbus_up", "dots_ganesha_export_changes_total", "dots_nfs_exports", "dots_snapshots", "dots_pool_data_errors")

	// A refresh that fails keeps the last values, counts the failure and
	// lets the age grow; zpool list still answering updates the state.
	pool.mu.Lock()
	pool.statsErr, pool.stats.Health = errors.New("zpool status: killed"), zfs.HealthSuspended
	pool.mu.Unlock()
	nfsStatus = nfs.Status{State: "restarting", Restarts: 3}
	if err := m.Refresh(context.Background()); err == nil {
		t.Fatal("a failed refresh reported no error")
	}
	c.add(time.Minute)
	if got := testutil.ToFloat64(m.refreshErrors.WithLabelValues("stats")); got != 1 {
		t.Errorf("stats refresh errors %v, want 1", got)
	}
	wantMetrics(t, reg, `
# HELP dots_pool_stats_age_seconds Seconds since the pool's metrics were last read completely (since the server started, before the first time).
# TYPE dots_pool_stats_age_seconds gauge
dots_pool_stats_age_seconds{pool="tank"} 62
# HELP dots_pool_stats_up 1 when the last refresh of the pool's metrics succeeded.
# TYPE dots_pool_stats_up gauge
dots_pool_stats_up{pool="tank"} 0
# HELP dots_pool_size_bytes The pool's raw size (zpool list SIZE).
# TYPE dots_pool_size_bytes gauge
dots_pool_size_bytes{pool="tank"} 1000
# HELP dots_ganesha_up 1 while NFS-Ganesha runs and serves the exports.
# TYPE dots_ganesha_up gauge
dots_ganesha_up 0
`, "dots_pool_stats_age_seconds", "dots_pool_stats_up", "dots_pool_size_bytes", "dots_ganesha_up")
	if got := testutil.ToFloat64(healthGauge(t, reg, zfs.HealthSuspended)); got != 1 {
		t.Errorf("health SUSPENDED = %v after a failed refresh whose zpool list answered", got)
	}
}

// healthGauge returns dots_pool_health{state} as a collector for ToFloat64.
func healthGauge(t *testing.T, reg *prometheus.Registry, state string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "dots_pool_health" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == state {
					g.Set(m.GetGauge().GetValue())
				}
			}
		}
	}
	return g
}

// TestPoolMonitorBoundsVolumeSeries: beyond --metrics-max-volumes, the
// largest volumes keep their series and the rest are summed as _other.
func TestPoolMonitorBoundsVolumeSeries(t *testing.T) {
	pool := &fakeStatsPool{flavor: zfs.Flavor{CLI: zfs.CLIZFSFuse}, stats: zfs.PoolStats{Health: zfs.HealthOnline, Fragmentation: -1,
		Scan: zfs.Scan{State: zfs.ScanNone}}}
	for i := range 5 {
		pool.usage.Volumes = append(pool.usage.Volumes, zfs.VolumeUsage{Name: fmt.Sprintf("v%d", i), Used: int64(10 * (i + 1)), Referenced: 1, Quota: 100})
	}
	m, reg, _ := newTestMonitor(t, pool, OpsConfig{MetricsMaxVolumes: 2}, nil)
	if err := m.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, reg, `
# HELP dots_volume_used_bytes A volume's used bytes (its data, snapshots and reservation).
# TYPE dots_volume_used_bytes gauge
dots_volume_used_bytes{volume="_other"} 60
dots_volume_used_bytes{volume="v3"} 40
dots_volume_used_bytes{volume="v4"} 50
# HELP dots_volume_quota_bytes A volume's size (zfs refquota).
# TYPE dots_volume_quota_bytes gauge
dots_volume_quota_bytes{volume="_other"} 300
dots_volume_quota_bytes{volume="v3"} 100
dots_volume_quota_bytes{volume="v4"} 100
# HELP dots_volume_series_aggregated Volumes beyond --metrics-max-volumes, summed under volume="_other" instead of series of their own.
# TYPE dots_volume_series_aggregated gauge
dots_volume_series_aggregated{pool="tank"} 3
# HELP dots_volumes Live volumes in the pool.
# TYPE dots_volumes gauge
dots_volumes{pool="tank"} 5
# HELP dots_pool_info The pool and its ZFS flavour (zfs_cli: openzfs or zfs-fuse); sizes=exact where zpool prints bytes (OpenZFS), rounded where it prints three digits (zfs-fuse). Always 1.
# TYPE dots_pool_info gauge
dots_pool_info{pool="tank",sizes="rounded",zfs_cli="zfs-fuse"} 1
`, "dots_volume_used_bytes", "dots_volume_quota_bytes", "dots_volume_series_aggregated", "dots_volumes", "dots_pool_info",
		"dots_pool_fragmentation_ratio", "dots_pool_scrub_last_end_timestamp_seconds")
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestScrubDue(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	week := 7 * 24 * time.Hour
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	for _, tc := range []struct {
		name     string
		st       zfs.PoolStats
		interval time.Duration
		due      bool
	}{
		{"off", zfs.PoolStats{Health: zfs.HealthOnline, Scan: zfs.Scan{State: zfs.ScanNone}, Created: at(30 * week)}, 0, false},
		{"never scrubbed, old pool", zfs.PoolStats{Health: zfs.HealthOnline, Scan: zfs.Scan{State: zfs.ScanNone}, Created: at(2 * week)}, week, true},
		{"never scrubbed, new pool", zfs.PoolStats{Health: zfs.HealthOnline, Scan: zfs.Scan{State: zfs.ScanNone}, Created: at(time.Hour)}, week, false},
		{"scrubbed long ago", zfs.PoolStats{Health: zfs.HealthOnline, Scan: zfs.Scan{Kind: zfs.ScanScrub, State: zfs.ScanFinished, End: at(8 * 24 * time.Hour)}}, week, true},
		{"scrubbed lately", zfs.PoolStats{Health: zfs.HealthOnline, Scan: zfs.Scan{Kind: zfs.ScanScrub, State: zfs.ScanFinished, End: at(24 * time.Hour)}}, week, false},
		{"canceled lately", zfs.PoolStats{Health: zfs.HealthOnline, Scan: zfs.Scan{Kind: zfs.ScanScrub, State: zfs.ScanCanceled, End: at(time.Hour)}}, week, false},
		{"resilvered lately", zfs.PoolStats{Health: zfs.HealthOnline, Scan: zfs.Scan{Kind: zfs.ScanResilver, State: zfs.ScanFinished, End: at(time.Hour)}}, week, false},
		{"degraded, due", zfs.PoolStats{Health: zfs.HealthDegraded, Scan: zfs.Scan{Kind: zfs.ScanScrub, State: zfs.ScanFinished, End: at(2 * week)}}, week, true},
		{"running", zfs.PoolStats{Health: zfs.HealthOnline, Scan: zfs.Scan{Kind: zfs.ScanScrub, State: zfs.ScanRunning, Start: at(2 * week)}}, week, false},
		{"paused", zfs.PoolStats{Health: zfs.HealthOnline, Scan: zfs.Scan{Kind: zfs.ScanScrub, State: zfs.ScanPaused}}, week, false},
		{"resilvering", zfs.PoolStats{Health: zfs.HealthDegraded, Scan: zfs.Scan{Kind: zfs.ScanResilver, State: zfs.ScanRunning}}, week, false},
		{"faulted", zfs.PoolStats{Health: zfs.HealthFaulted, Scan: zfs.Scan{State: zfs.ScanNone}, Created: at(30 * week)}, week, false},
		{"unknown scan", zfs.PoolStats{Health: zfs.HealthOnline, Scan: zfs.Scan{State: zfs.ScanUnknown}, Created: at(30 * week)}, week, false},
		{"no creation time", zfs.PoolStats{Health: zfs.HealthOnline, Scan: zfs.Scan{State: zfs.ScanNone}}, week, false},
	} {
		if due, why := scrubDue(tc.st, tc.interval, now); due != tc.due || why == "" {
			t.Errorf("%s: due=%v (%s), want %v", tc.name, due, why, tc.due)
		}
	}
}

// TestScheduledScrubNeverTwice: the monitor starts a due scrub once; while
// it runs, and for an interval after it started, whatever zpool status
// says, it starts no other; a refused start is counted and tried again.
func TestScheduledScrubNeverTwice(t *testing.T) {
	pool := &fakeStatsPool{flavor: zfs.Flavor{CLI: zfs.CLIZFSFuse}, stats: zfs.PoolStats{Health: zfs.HealthOnline,
		Scan: zfs.Scan{State: zfs.ScanNone}, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	m, _, c := newTestMonitor(t, pool, OpsConfig{StatsInterval: time.Minute, ScrubInterval: time.Hour}, nil)
	ctx := context.Background()
	refresh := func() {
		t.Helper()
		if err := m.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	scrubs := func() int { pool.mu.Lock(); defer pool.mu.Unlock(); return pool.scrubs }
	refresh()
	if scrubs() != 1 || testutil.ToFloat64(m.scrubsStarted) != 1 {
		t.Fatalf("scrubs %d after the first refresh of a pool never scrubbed", scrubs())
	}
	c.add(time.Minute)
	refresh() // zpool status: in progress
	// It ends at once and zpool status forgets it (a pool exported and
	// imported elsewhere, say): still no second scrub within the interval.
	pool.mu.Lock()
	pool.stats.Scan = zfs.Scan{State: zfs.ScanNone}
	pool.mu.Unlock()
	c.add(time.Minute)
	refresh()
	if scrubs() != 1 {
		t.Fatalf("scrubs %d: a second one within the interval", scrubs())
	}
	// Finished; an interval later, the next one.
	pool.mu.Lock()
	pool.stats.Scan = zfs.Scan{Kind: zfs.ScanScrub, State: zfs.ScanFinished, End: c.now()}
	pool.scrubErr = errors.New("cannot scrub: currently resilvering")
	pool.mu.Unlock()
	c.add(time.Hour)
	refresh()
	if scrubs() != 1 || testutil.ToFloat64(m.scrubErrors) != 1 {
		t.Fatalf("a refused scrub: scrubs %d, errors %v", scrubs(), testutil.ToFloat64(m.scrubErrors))
	}
	pool.mu.Lock()
	pool.scrubErr = nil
	pool.mu.Unlock()
	c.add(time.Minute)
	refresh()
	if scrubs() != 2 || testutil.ToFloat64(m.scrubsStarted) != 2 {
		t.Fatalf("scrubs %d, want the second one once due", scrubs())
	}
}

func TestOpsConfigValidate(t *testing.T) {
	c := OpsConfig{}
	if err := c.Validate(); err != nil || c.StatsInterval != DefaultStatsInterval || c.MetricsMaxVolumes != DefaultMetricsMaxVolumes || c.ScrubInterval != 0 {
		t.Errorf("zero config: %+v %v", c, err)
	}
	for _, bad := range []OpsConfig{{StatsInterval: -1}, {ScrubInterval: -1}, {MetricsMaxVolumes: -1},
		{StatsInterval: time.Minute, ScrubInterval: time.Second}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
