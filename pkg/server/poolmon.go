package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
)

// StatsPool is what the pool monitor reads and does (*zfs.Pool).
type StatsPool interface {
	Name() string
	Flavor() zfs.Flavor
	Stats(ctx context.Context) (zfs.PoolStats, error)
	Usage(ctx context.Context) (zfs.Usage, error)
	Scrub(ctx context.Context) error
}

// PoolMonitor reads the pool's state in the background, every
// StatsInterval, and serves it to /metrics from memory: a scrape never runs
// a zfs command, and a refresh that fails or hangs (each command has its
// deadline) shows as a growing dots_pool_stats_age_seconds and a count of
// errors, with the last values kept. The same loop starts scheduled
// scrubs, so there is never more than one scrub decision at a time.
type PoolMonitor struct {
	pool    StatsPool
	nfs     func() nfs.Status // nil: no NFS server to report
	cfg     OpsConfig
	now     func() time.Time
	created time.Time

	refreshErrors *prometheus.CounterVec
	scrubsStarted prometheus.Counter
	scrubErrors   prometheus.Counter

	mu        sync.Mutex
	stats     zfs.PoolStats
	usage     zfs.Usage
	ok        time.Time     // end of the last complete refresh
	statsAt   time.Time     // start of the last read that gave the pool's state
	took      time.Duration // how long it took
	lastErr   error
	lastScrub zfs.Scan  // the last finished or canceled scrub seen
	scrubbed  time.Time // when this monitor last started one
	warned    bool      // the volume series bound was logged
}

// NewPoolMonitor returns a monitor of pool (and of the NFS server whose
// status nfsStatus reads, if not nil) whose metrics are registered with
// reg (if not nil). cfg must be validated.
func NewPoolMonitor(pool StatsPool, nfsStatus func() nfs.Status, cfg OpsConfig, reg prometheus.Registerer) *PoolMonitor {
	labels := prometheus.Labels{"pool": pool.Name()}
	m := &PoolMonitor{pool: pool, nfs: nfsStatus, cfg: cfg, now: time.Now,
		refreshErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dots_pool_stats_refresh_errors_total", ConstLabels: labels,
			Help: "Refreshes of the pool's metrics that failed, by what failed (stats: zpool list/status or the root dataset; usage: the volumes' space).",
		}, []string{"part"}),
		scrubsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dots_pool_scrubs_started_total", ConstLabels: labels,
			Help: "Scrubs this server started (--scrub-interval).",
		}),
		scrubErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dots_pool_scrub_start_errors_total", ConstLabels: labels,
			Help: "Scheduled scrubs `zpool scrub` refused or did not start in time.",
		}),
	}
	m.created = m.now()
	for _, part := range []string{"stats", "usage"} {
		m.refreshErrors.WithLabelValues(part)
	}
	if reg != nil {
		reg.MustRegister(m, m.refreshErrors, m.scrubsStarted, m.scrubErrors)
	}
	return m
}

// Run refreshes at once and then every StatsInterval until ctx ends.
func (m *PoolMonitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.StatsInterval)
	defer t.Stop()
	for {
		if err := m.Refresh(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Refreshing the pool's metrics", "pool", m.pool.Name())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Refresh reads the pool once and starts a scrub if one is due. It
// returns what failed; what was read is kept either way.
func (m *PoolMonitor) Refresh(ctx context.Context) error {
	start := m.now()
	st, serr := m.pool.Stats(ctx)
	if serr != nil {
		m.refreshErrors.WithLabelValues("stats").Inc()
	}
	var u zfs.Usage
	var uerr error
	if st.Health != zfs.HealthFaulted && st.Health != zfs.HealthUnavail {
		if u, uerr = m.pool.Usage(ctx); uerr != nil {
			m.refreshErrors.WithLabelValues("usage").Inc()
		}
	}
	m.mu.Lock()
	switch {
	case serr == nil:
		m.stats, m.statsAt = st, start
		if st.Scan.Kind == zfs.ScanScrub && (st.Scan.State == zfs.ScanFinished || st.Scan.State == zfs.ScanCanceled) {
			m.lastScrub = st.Scan
		}
	case st.Health != "":
		m.stats.Health, m.statsAt = st.Health, start // zpool list answered: its state is news
	}
	if uerr == nil {
		m.usage = u
	}
	err := errors.Join(serr, uerr)
	m.lastErr = err
	if err == nil {
		m.ok, m.took = m.now(), m.now().Sub(start)
	}
	m.mu.Unlock()
	if serr == nil {
		m.maybeScrub(ctx, st)
	}
	return err
}

// maybeScrub starts a scrub when scrubDue says so, and never again while
// the last one this monitor started is younger than the interval, whatever
// zpool status says meanwhile.
func (m *PoolMonitor) maybeScrub(ctx context.Context, st zfs.PoolStats) {
	now := m.now()
	m.mu.Lock()
	recent := !m.scrubbed.IsZero() && now.Sub(m.scrubbed) < m.cfg.ScrubInterval
	m.mu.Unlock()
	due, why := scrubDue(st, m.cfg.ScrubInterval, now)
	if !due || recent {
		klog.V(4).InfoS("No scrub", "pool", m.pool.Name(), "reason", why, "startedRecently", recent)
		return
	}
	klog.InfoS("Starting a scheduled scrub", "pool", m.pool.Name(), "reason", why, "interval", m.cfg.ScrubInterval)
	if err := m.pool.Scrub(ctx); err != nil {
		m.scrubErrors.Inc()
		klog.ErrorS(err, "Scheduled scrub did not start", "pool", m.pool.Name())
		return
	}
	m.scrubsStarted.Inc()
	m.mu.Lock()
	m.scrubbed = now
	m.mu.Unlock()
}

// scrubDue says whether a scrub should start now, and why (for the log).
// The last scan counts from when it ended, a pool never scanned from its
// creation; a running or paused scan (scrub or resilver) and a pool that
// is neither ONLINE nor DEGRADED rule a scrub out.
func scrubDue(st zfs.PoolStats, interval time.Duration, now time.Time) (bool, string) {
	if interval <= 0 {
		return false, "scheduled scrubs are off"
	}
	if st.Health != zfs.HealthOnline && st.Health != zfs.HealthDegraded {
		return false, fmt.Sprintf("the pool is %s", st.Health)
	}
	var since time.Time
	switch st.Scan.State {
	case zfs.ScanRunning, zfs.ScanPaused:
		return false, fmt.Sprintf("a %s is %s", st.Scan.Kind, st.Scan.State)
	case zfs.ScanFinished, zfs.ScanCanceled:
		since = st.Scan.End
	case zfs.ScanNone:
		since = st.Created
	default:
		return false, "zpool status does not say what was scanned"
	}
	if since.IsZero() {
		return false, "no time to count from"
	}
	if age := now.Sub(since); age < interval {
		return false, fmt.Sprintf("last %s %s ago", orWord(string(st.Scan.Kind), "creation"), age.Round(time.Second))
	}
	return true, fmt.Sprintf("last %s ended %s", orWord(string(st.Scan.Kind), "scan: none; created"), since.Format(time.RFC3339))
}

func orWord(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Snapshot is what the monitor last read, for callers other than the
// collector (tests).
func (m *PoolMonitor) Snapshot() (zfs.PoolStats, zfs.Usage, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats, m.usage, m.ok, m.lastErr
}

// State is the pool's health as last read, and when (zero: not yet).
func (m *PoolMonitor) State() (string, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats.Health, m.statsAt
}
