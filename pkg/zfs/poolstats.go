package zfs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// Pool states as zpool reports them (`zpool list -o health`).
const (
	HealthOnline    = "ONLINE"
	HealthDegraded  = "DEGRADED"
	HealthFaulted   = "FAULTED"
	HealthOffline   = "OFFLINE"
	HealthRemoved   = "REMOVED"
	HealthUnavail   = "UNAVAIL"
	HealthSuspended = "SUSPENDED"
)

// HealthStates lists the states in a stable order (the label values of a
// health gauge).
var HealthStates = []string{HealthOnline, HealthDegraded, HealthFaulted, HealthOffline, HealthRemoved, HealthUnavail, HealthSuspended}

// PoolStats is what zpool and zfs say about the whole pool.
type PoolStats struct {
	// Health is the pool's state, one of HealthStates (or what zpool
	// printed, when it is none of them).
	Health string
	// Size, Allocated and Free are zpool's figures for the vdevs' raw
	// space (`zpool list`). OpenZFS prints them exact (-p); zfs-fuse only
	// rounded to at most three significant digits: SizesExact says which.
	// A pool zpool cannot open (FAULTED) has none: all three are 0.
	Size, Allocated, Free int64
	SizesExact            bool
	// Fragmentation is the free space's fragmentation in percent; -1
	// where unknown (zfs-fuse has no such property; OpenZFS prints "-"
	// without the spacemap_histogram feature).
	Fragmentation int
	// Used and Available are the root dataset's, exact to the byte: what
	// the datasets use and what a volume can still get.
	Used, Available int64
	// Created is when the pool (its root dataset) was created.
	Created time.Time
	// Scan is the last or current scrub or resilver (`zpool status`).
	Scan Scan
	// DataErrors counts the permanent errors `zpool status` reports in
	// files ("errors: N data errors").
	DataErrors int64
}

// ScanKind says what a scan does.
type ScanKind string

// ScanState says where a scan is.
type ScanState string

// Kinds and states of scans.
const (
	ScanScrub    ScanKind = "scrub"
	ScanResilver ScanKind = "resilver"

	ScanUnknown  ScanState = "unknown"  // zpool status says nothing (a pool it cannot open)
	ScanNone     ScanState = "none"     // never scanned
	ScanRunning  ScanState = "running"  // in progress
	ScanPaused   ScanState = "paused"   // a scrub paused (zpool scrub -p, OpenZFS)
	ScanFinished ScanState = "finished" // done
	ScanCanceled ScanState = "canceled" // stopped before the end (zpool scrub -s)
)

// Scan is the pool's last or current scrub or resilver.
type Scan struct {
	Kind  ScanKind
	State ScanState
	// Start is when a running or paused scan started, where zpool says
	// (OpenZFS does, zfs-fuse does not: zero then).
	Start time.Time
	// End is when a finished or canceled scan ended.
	End time.Time
	// Errors counts the errors a finished scan found.
	Errors int64
}

// Active reports a scan in progress or paused: another cannot start.
func (s Scan) Active() bool { return s.State == ScanRunning || s.State == ScanPaused }

// State reads the pool's health alone (`zpool list -H -o health`).
func (p *Pool) State(ctx context.Context) (string, error) {
	out, err := p.run(ctx, command.Pool("list", "-H", "-o", "health", p.name))
	if err != nil {
		return "", wrapErr("zpool list "+p.name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// zpoolListArgs is the `zpool list` of the flavour: exact bytes and
// fragmentation on OpenZFS; zfs-fuse takes neither -p nor fragmentation.
func (p *Pool) zpoolListArgs() []string {
	if p.flavor.ExactZpool {
		return []string{"list", "-Hp", "-o", "name,size,allocated,free,fragmentation,health", p.name}
	}
	return []string{"list", "-H", "-o", "name,size,allocated,free,health", p.name}
}

// Flavor is the ZFS flavour the pool was opened with.
func (p *Pool) Flavor() Flavor { return p.flavor }

// Stats reads the pool's space, health and last scan: `zpool list`,
// `zpool status` and one `zfs get` of the root dataset, each through the
// command runner (so with its deadline). Call it from a background loop,
// never while answering a scrape. With an error, what was read before it
// is returned too (the health, when zpool list answered).
func (p *Pool) Stats(ctx context.Context) (PoolStats, error) {
	start := time.Now()
	out, err := p.run(ctx, command.Pool(p.zpoolListArgs()...))
	if err != nil {
		return PoolStats{}, wrapErr("zpool list "+p.name, err)
	}
	st, err := parseZpoolList(string(out), p.name, p.flavor.ExactZpool)
	if err != nil {
		return PoolStats{}, err
	}
	out, err = p.run(ctx, command.Pool("status", p.name))
	if err != nil {
		return st, wrapErr("zpool status "+p.name, err)
	}
	status, err := parseZpoolStatus(string(out), time.Local)
	if err != nil {
		return st, fmt.Errorf("zpool status %s: %w", p.name, err)
	}
	st.Scan, st.DataErrors = status.scan, status.dataErrors
	if st.Health == HealthFaulted || st.Health == HealthUnavail {
		return st, nil // no datasets to ask
	}
	t, err := p.getProps(ctx, depthSelf, []string{propUsed, propAvailable, propCreation}, p.name)
	if err != nil {
		return st, err
	}
	d := t.props[p.name]
	st.Used, st.Available = d.int(propUsed), d.int(propAvailable)
	p.setCapacity(st.Used, st.Available, start) // what creates check against
	if secs := d.int(propCreation); secs > 0 {
		st.Created = time.Unix(secs, 0)
	}
	return st, nil
}

// Scrub starts a scrub of the pool (`zpool scrub`). A scrub runs in the
// background; Stats reports its progress and outcome. Starting one while a
// scan runs is refused by OpenZFS and restarts it on zfs-fuse: callers
// check Stats first.
func (p *Pool) Scrub(ctx context.Context) error {
	if _, err := p.run(ctx, command.Pool("scrub", p.name)); err != nil {
		return wrapErr("zpool scrub "+p.name, err)
	}
	klog.InfoS("Scrub started", "pool", p.name)
	return nil
}
