package server

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
)

// otherVolumes is the volume label of the sum of the volumes beyond
// --metrics-max-volumes. No volume can be called so: names start with a
// letter or digit.
const otherVolumes = "_other"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The pool monitor's metrics. Every value is the last successful
// refresh's; dots_pool_stats_age_seconds says how old that is.
var (
	descPoolInfo = desc("dots_pool_info",
		"The pool and its ZFS flavour (zfs_cli: openzfs or zfs-fuse); sizes=exact where zpool prints bytes (OpenZFS), rounded where it prints three digits (zfs-fuse). Always 1.",
		"pool", "zfs_cli", "sizes")
	descPoolHealth = desc("dots_pool_health",
		"1 for the pool's state as zpool reports it (ONLINE, DEGRADED, FAULTED, OFFLINE, REMOVED, UNAVAIL, SUSPENDED), 0 for the others.",
		"pool", "state")
	descPoolSize      = desc("dots_pool_size_bytes", "The pool's raw size (zpool list SIZE).", "pool")
	descPoolAllocated = desc("dots_pool_allocated_bytes", "Raw space allocated in the pool (zpool list ALLOC).", "pool")
	descPoolFree      = desc("dots_pool_free_bytes", "Raw space free in the pool (zpool list FREE).", "pool")
	descPoolFrag      = desc("dots_pool_fragmentation_ratio",
		"Fragmentation of the pool's free space, 0..1 (zpool list FRAG). OpenZFS only: absent on zfs-fuse.", "pool")
	descPoolUsed      = desc("dots_pool_used_bytes", "Bytes the pool's datasets use (zfs used of the root dataset, exact).", "pool")
	descPoolAvailable = desc("dots_pool_available_bytes",
		"Bytes a volume can still get (zfs available of the root dataset, exact): what placement and GetCapacity use.", "pool")
	descPoolDataErrors = desc("dots_pool_data_errors",
		"Permanent errors in files that zpool status reports (errors: N data errors; zpool status -v names them).", "pool")
	descScrubRunning = desc("dots_pool_scrub_running", "1 while a scrub runs or is paused.", "pool")
	descScanRunning  = desc("dots_pool_resilver_running", "1 while a resilver runs.", "pool")
	descScrubEnd     = desc("dots_pool_scrub_last_end_timestamp_seconds",
		"When the last scrub ended (finished or canceled), in Unix seconds; absent if none is known.", "pool")
	descScrubErrors = desc("dots_pool_scrub_last_errors",
		"Errors the last finished scrub found (zpool status: with N errors).", "pool")
	descScrubCanceled = desc("dots_pool_scrub_last_canceled", "1 when the last scrub was canceled before its end.", "pool")
	descVolumes       = desc("dots_volumes", "Live volumes in the pool.", "pool")
	descAggregated    = desc("dots_volume_series_aggregated",
		"Volumes beyond --metrics-max-volumes, summed under volume=\"_other\" instead of series of their own.", "pool")
	descVolUsed       = desc("dots_volume_used_bytes", "A volume's used bytes (its data, snapshots and reservation).", "volume")
	descVolReferenced = desc("dots_volume_referenced_bytes", "What a volume's file system holds (zfs referenced).", "volume")
	descVolQuota      = desc("dots_volume_quota_bytes", "A volume's size (zfs refquota).", "volume")
	descSnapshots     = desc("dots_snapshots", "ZFS snapshots of dots' datasets, including those kept for clones.", "pool")
	descSnapBytes     = desc("dots_snapshot_used_bytes", "Space only snapshots hold (sum of zfs usedbysnapshots).", "pool")
	descTrashBytes    = desc("dots_trash_used_bytes", "Space deleted volumes still use for snapshots that outlive them.", "pool")
	descStatsAge      = desc("dots_pool_stats_age_seconds",
		"Seconds since the pool's metrics were last read completely (since the server started, before the first time).", "pool")
	descStatsOK = desc("dots_pool_stats_last_success_timestamp_seconds",
		"When the pool's metrics were last read completely, in Unix seconds.", "pool")
	descStatsTook  = desc("dots_pool_stats_refresh_seconds", "How long the last complete refresh took.", "pool")
	descStatsOkNow = desc("dots_pool_stats_up", "1 when the last refresh of the pool's metrics succeeded.", "pool")
	descExports    = desc("dots_nfs_exports", "Exports the NFS server serves.")
	descExportsBad = desc("dots_nfs_exports_failed", "Exports the NFS server refused (see the server's log).")
	descGaneshaUp  = desc("dots_ganesha_up", "1 while NFS-Ganesha runs and serves the exports.")
	descRestarts   = desc("dots_ganesha_restarts_total", "Unexpected exits of NFS-Ganesha the server recovered from.")
	descReloads    = desc("dots_ganesha_reloads_total", "Export reloads (SIGHUP) sent to NFS-Ganesha.")
	descDBusUp     = desc("dots_ganesha_dbus_up", "1 while the private dbus-daemon of NFS-Ganesha's export manager runs.")
	descChanges    = desc("dots_ganesha_export_changes_total",
		"Export changes by how they reached NFS-Ganesha: method dbus (one export manager call each) with outcome ok, error (the call failed: SIGHUP took over), unavailable (no bus) or batch (too many at once for calls); method sighup (a reload of every export) with outcome ok or error.",
		"method", "outcome")
)

// changeSeries are the export change counts always exported, zeros too.
var changeSeries = []nfs.ChangeKey{
	{Method: nfs.MethodDBus, Outcome: nfs.OutcomeOK}, {Method: nfs.MethodDBus, Outcome: nfs.OutcomeError},
	{Method: nfs.MethodDBus, Outcome: nfs.OutcomeUnavailable}, {Method: nfs.MethodDBus, Outcome: nfs.OutcomeTooMany},
	{Method: nfs.MethodSIGHUP, Outcome: nfs.OutcomeOK}, {Method: nfs.MethodSIGHUP, Outcome: nfs.OutcomeError},
}

var allDescs = []*prometheus.Desc{descPoolInfo, descPoolHealth, descPoolSize, descPoolAllocated, descPoolFree,
	descPoolFrag, descPoolUsed, descPoolAvailable, descPoolDataErrors, descScrubRunning, descScanRunning, descScrubEnd,
	descScrubErrors, descScrubCanceled, descVolumes, descAggregated, descVolUsed, descVolReferenced, descVolQuota,
	descSnapshots, descSnapBytes, descTrashBytes, descStatsAge, descStatsOK, descStatsTook, descStatsOkNow,
	descExports, descExportsBad, descGaneshaUp, descRestarts, descReloads, descDBusUp, descChanges}

// Describe implements prometheus.Collector.
func (m *PoolMonitor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector from memory only: no command runs.
func (m *PoolMonitor) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	pool := m.pool.Name()
	m.mu.Lock()
	st, u, ok, took, lastErr, scrub := m.stats, m.usage, m.ok, m.took, m.lastErr, m.lastScrub
	m.mu.Unlock()
	now := m.now()

	sizes := "rounded"
	if m.pool.Flavor().ExactZpool {
		sizes = "exact"
	}
	gauge(descPoolInfo, 1, pool, string(m.pool.Flavor().CLI), sizes)
	since := ok
	if since.IsZero() {
		since = m.created
	}
	gauge(descStatsAge, now.Sub(since).Seconds(), pool)
	gauge(descStatsOkNow, b2f(lastErr == nil && !ok.IsZero()), pool)
	if !ok.IsZero() {
		gauge(descStatsOK, float64(ok.UnixNano())/1e9, pool)
		gauge(descStatsTook, took.Seconds(), pool)
	}
	m.collectNFS(ch, gauge)
	if st.Health == "" {
		return // never read
	}
	known := false
	for _, s := range zfs.HealthStates {
		known = known || s == st.Health
		gauge(descPoolHealth, b2f(s == st.Health), pool, s)
	}
	if !known {
		gauge(descPoolHealth, 1, pool, st.Health)
	}
	if ok.IsZero() {
		return // only the state is known (zpool list answered, the rest did not)
	}
	gauge(descPoolSize, float64(st.Size), pool)
	gauge(descPoolAllocated, float64(st.Allocated), pool)
	gauge(descPoolFree, float64(st.Free), pool)
	if st.Fragmentation >= 0 {
		gauge(descPoolFrag, float64(st.Fragmentation)/100, pool)
	}
	gauge(descPoolUsed, float64(st.Used), pool)
	gauge(descPoolAvailable, float64(st.Available), pool)
	gauge(descPoolDataErrors, float64(st.DataErrors), pool)
	gauge(descScrubRunning, b2f(st.Scan.Kind == zfs.ScanScrub && st.Scan.Active()), pool)
	gauge(descScanRunning, b2f(st.Scan.Kind == zfs.ScanResilver && st.Scan.Active()), pool)
	if !scrub.End.IsZero() {
		gauge(descScrubEnd, float64(scrub.End.Unix()), pool)
		gauge(descScrubErrors, float64(scrub.Errors), pool)
		gauge(descScrubCanceled, b2f(scrub.State == zfs.ScanCanceled), pool)
	}
	gauge(descSnapshots, float64(u.Snapshots), pool)
	gauge(descSnapBytes, float64(u.SnapshotBytes), pool)
	gauge(descTrashBytes, float64(u.TrashBytes), pool)
	m.collectVolumes(u.Volumes, gauge)
}

func (m *PoolMonitor) collectNFS(ch chan<- prometheus.Metric, gauge func(*prometheus.Desc, float64, ...string)) {
	if m.nfs == nil {
		return
	}
	n := m.nfs()
	gauge(descGaneshaUp, b2f(n.Up))
	gauge(descExports, float64(n.Exports))
	gauge(descExportsBad, float64(n.Failed))
	ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(n.Restarts))
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(n.Reloads))
	gauge(descDBusUp, b2f(n.BusPid != 0))
	for _, k := range changeSeries {
		ch <- prometheus.MustNewConstMetric(descChanges, prometheus.CounterValue, float64(n.ExportChanges[k]), k.Method, k.Outcome)
	}
}

// collectVolumes gives the MetricsMaxVolumes largest volumes (by used
// bytes) series of their own and sums the rest under volume="_other", so
// a server with many thousand volumes does not flood Prometheus.
func (m *PoolMonitor) collectVolumes(vols []zfs.VolumeUsage, gauge func(*prometheus.Desc, float64, ...string)) {
	pool := m.pool.Name()
	gauge(descVolumes, float64(len(vols)), pool)
	limit := m.cfg.MetricsMaxVolumes
	if len(vols) <= limit {
		gauge(descAggregated, 0, pool)
		for _, v := range vols {
			gauge(descVolUsed, float64(v.Used), v.Name)
			gauge(descVolReferenced, float64(v.Referenced), v.Name)
			gauge(descVolQuota, float64(v.Quota), v.Name)
		}
		return
	}
	sorted := append([]zfs.VolumeUsage(nil), vols...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Used > sorted[j].Used })
	var other zfs.VolumeUsage
	for i, v := range sorted {
		if i < limit {
			gauge(descVolUsed, float64(v.Used), v.Name)
			gauge(descVolReferenced, float64(v.Referenced), v.Name)
			gauge(descVolQuota, float64(v.Quota), v.Name)
			continue
		}
		other.Used += v.Used
		other.Referenced += v.Referenced
		other.Quota += v.Quota
	}
	gauge(descVolUsed, float64(other.Used), otherVolumes)
	gauge(descVolReferenced, float64(other.Referenced), otherVolumes)
	gauge(descVolQuota, float64(other.Quota), otherVolumes)
	gauge(descAggregated, float64(len(vols)-limit), pool)
	m.mu.Lock()
	warn := !m.warned
	m.warned = true
	m.mu.Unlock()
	if warn {
		klog.InfoS("More volumes than --metrics-max-volumes: the smaller ones are summed under volume=\"_other\"",
			"pool", pool, "volumes", len(vols), "maxVolumes", limit)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
