package server

import (
	"errors"
	"flag"
	"time"
)

// Defaults of OpsConfig.
const (
	DefaultStatsInterval     = 30 * time.Second
	DefaultScrubInterval     = 7 * 24 * time.Hour
	DefaultMetricsMaxVolumes = 1000
)

// OpsConfig is what a server does for its operators: the pool's metrics
// (read in the background, never during a scrape) and scheduled scrubs.
type OpsConfig struct {
	// StatsInterval is how often the pool's space, health, scan and
	// volumes are read for /metrics (0: DefaultStatsInterval).
	StatsInterval time.Duration
	// ScrubInterval starts a scrub when the last one ended longer ago
	// (a pool never scrubbed counts from its creation); 0 never scrubs.
	ScrubInterval time.Duration
	// MetricsMaxVolumes bounds the volumes with series of their own; the
	// others are summed under volume="_other" (0: the default).
	MetricsMaxVolumes int
}

// AddFlags registers the flags of c.
func (c *OpsConfig) AddFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.StatsInterval, "pool-stats-interval", DefaultStatsInterval,
		"how often the pool's space, health, last scrub and volumes are read for /metrics (dots_pool_stats_age_seconds says how old they are)")
	fs.DurationVar(&c.ScrubInterval, "scrub-interval", DefaultScrubInterval,
		"start `zpool scrub` when the last scrub ended longer ago than this (a pool never scrubbed counts from its creation); never two at once; 0 turns scheduled scrubs off")
	fs.IntVar(&c.MetricsMaxVolumes, "metrics-max-volumes", DefaultMetricsMaxVolumes,
		"volumes with metric series of their own (the largest by used bytes); the rest are summed under volume=\"_other\" and counted in dots_volume_series_aggregated")
}

// Validate checks c and fills defaults.
func (c *OpsConfig) Validate() error {
	if c.StatsInterval < 0 || c.ScrubInterval < 0 || c.MetricsMaxVolumes < 0 {
		return errors.New("--pool-stats-interval, --scrub-interval and --metrics-max-volumes must not be negative")
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = DefaultStatsInterval
	}
	if c.MetricsMaxVolumes == 0 {
		c.MetricsMaxVolumes = DefaultMetricsMaxVolumes
	}
	if c.ScrubInterval > 0 && c.ScrubInterval < c.StatsInterval {
		return errors.New("--scrub-interval must be at least --pool-stats-interval (scrubs are started by the stats loop)")
	}
	return nil
}
