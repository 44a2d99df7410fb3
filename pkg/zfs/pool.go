// Package zfs is dots' view of one ZFS pool: volumes are datasets under
// POOL/dots/volumes (size = refquota), snapshots are ZFS snapshots, clones
// are ZFS clones. Everything dots needs to know about a volume is stored on
// the dataset as user properties, so the pool is the only source of truth
// and moves with the disk.
//
// Layout:
//
//	POOL/dots             dots:next-exportid (the export id mark, see exportid.go)
//	POOL/dots/volumes/V   one dataset per volume
//	POOL/dots/trash/V_ID  deleted volumes whose snapshots are still in use
//	POOL/dots/replicas/V  replicas of other servers' volumes (replica.go):
//	                      never mounted, indexed or exported
//	POOL/dots/diverged/V-gG-T  what a stale primary held when demoted
//	                      (replica_demote.go): kept, never mounted
//	POOL/dots/state       the NFS server's recovery directory
package zfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// minFileSize is the smallest vdev ZFS accepts.
const minFileSize = 64 << 20

// Config says which pool to open and how to make it.
type Config struct {
	Pool       string   // pool name
	Vdevs      []string // absolute paths of devices or files
	Mountpoint string   // mountpoint of the pool's root dataset; "" keeps ZFS's default
	Create     bool     // create the pool when it is neither imported nor importable
	FileSize   int64    // size of vdev files Open creates (sparse)
	// ForceImport allows `zpool import -f` of a pool another host used
	// last and did not export, when nothing else can prove that host gone
	// (no multihost): the operator's word that the disk is detached from
	// it. Never needed with multihost fencing (see fence.go).
	ForceImport bool
	// HostID, when not 0, is this node's hostid: written to HostIDFile
	// before the pool is imported, and the pool fenced with multihost
	// (OpenZFS). It must differ between nodes and stay the same on one.
	HostID     uint32
	HostIDFile string // default DefaultHostIDFile
	// Exclusive takes the same-host lock while the pool is open, so a
	// second server on this host refuses it (ErrPoolInUse). Servers set
	// it; tests that open one pool twice in a process do not.
	Exclusive bool
	// Runner runs the zfs and zpool commands (required).
	Runner command.Runner
	// CLI is the ZFS flavour; "" means CLIAuto.
	CLI CLI
	// MountLock (zfs-fuse only) is the file whose flock makes this host's
	// mounts take turns (SerializeMounts); "" means DefaultMountLock.
	MountLock string
}

// Validate checks the configuration without touching the host.
func (c Config) Validate() error {
	if err := ValidatePoolName(c.Pool); err != nil {
		return err
	}
	if len(c.Vdevs) == 0 {
		return fmt.Errorf("%w: pool %s: no vdevs", ErrInvalid, c.Pool)
	}
	seen := map[string]bool{}
	for _, v := range c.Vdevs {
		if !filepath.IsAbs(v) || filepath.Clean(v) != v {
			return fmt.Errorf("%w: vdev %q must be a clean absolute path", ErrInvalid, v)
		}
		if seen[v] {
			return fmt.Errorf("%w: vdev %q listed twice", ErrInvalid, v)
		}
		seen[v] = true
	}
	if c.Mountpoint != "" && (!filepath.IsAbs(c.Mountpoint) || filepath.Clean(c.Mountpoint) != c.Mountpoint) {
		return fmt.Errorf("%w: mountpoint %q must be a clean absolute path", ErrInvalid, c.Mountpoint)
	}
	if c.CLI != "" {
		if _, err := ParseCLI(string(c.CLI)); err != nil {
			return err
		}
	}
	if c.HostIDFile != "" && (!filepath.IsAbs(c.HostIDFile) || filepath.Clean(c.HostIDFile) != c.HostIDFile) {
		return fmt.Errorf("%w: hostid file %q must be a clean absolute path", ErrInvalid, c.HostIDFile)
	}
	if c.FileSize < 0 || (c.FileSize > 0 && c.FileSize < minFileSize) {
		return fmt.Errorf("%w: file size %d: must be 0 or at least %d", ErrInvalid, c.FileSize, minFileSize)
	}
	return nil
}

// Pool is an open pool. Its methods are safe for concurrent use; callers
// serialize operations on the same volume or snapshot name.
type Pool struct {
	name     string
	runner   command.Runner
	flavor   Flavor
	stateDir string
	tunables []string // the allow-listed properties this ZFS knows
	volProps []string // what is read for a Volume

	index     *index       // volumes and snapshots in memory (index.go)
	reindexMu sync.Mutex   // one Reindex at a time
	ids       *idAllocator // export ids (exportid.go)
	space     spaceCache   // the pool's free space (space.go)
	// volumesMountpoint is POOL/dots/volumes' mountpoint, read with the
	// index: new volumes mount below it.
	volumesMountpoint string

	snapNames nameLocks // snapshot names are unique in the pool
	reserve   reserve
	reapKick  chan struct{} // wakes Maintain to reap the trash

	mountMu   sync.Mutex
	mountErrs map[string]error // why a volume's dataset is not mounted, by dataset

	trashMu sync.Mutex
	pending map[string]trashEntry // deleted volumes still under volumes/, by dataset

	lockMu sync.Mutex
	lock   *os.File // the same-host lock (Config.Exclusive), nil when not held

	clock func() time.Time // names of replication snapshots; nil: time.Now
}

// Open imports or creates the pool described by cfg and makes sure dots'
// datasets exist. It also finishes what a crash may have left half done.
func Open(ctx context.Context, cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Runner == nil {
		return nil, fmt.Errorf("%w: pool %s: no command runner", ErrInvalid, cfg.Pool)
	}
	p := &Pool{name: cfg.Pool, runner: cfg.Runner, pending: map[string]trashEntry{},
		reapKick: make(chan struct{}, 1), mountErrs: map[string]error{}, index: newIndex()}
	p.ids = newIDAllocator(poolMarks{p}, exportIDBlock)
	cli := cfg.CLI
	if cli == "" {
		cli = CLIAuto
	}
	flavor, err := DetectFlavor(ctx, p.runner, cli)
	if err != nil {
		return nil, err
	}
	p.flavor = flavor
	if flavor.CLI == CLIZFSFuse {
		_, takes := p.runner.(MountTurnTaker)
		p.runner = retryLostDaemon(p.runner)
		if !takes {
			lock := cfg.MountLock
			if lock == "" {
				lock = DefaultMountLock
			}
			p.runner = SerializeMounts(p.runner, lock)
		}
	}
	if err := p.attach(ctx, cfg); err != nil {
		return nil, err
	}
	if err := p.setup(ctx, cfg); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("pool %s: %w", p.name, err)
	}
	return p, nil
}

// attach makes the pool imported on this host: it writes the hostid,
// then uses the imported pool, imports it (fenced, see fence.go) or
// creates it.
func (p *Pool) attach(ctx context.Context, cfg Config) error {
	if err := p.prepareHost(cfg); err != nil {
		return err
	}
	imported, err := p.imported(ctx)
	if err != nil {
		return err
	}
	switch {
	case imported:
		// Left by a server on this host that died (the same-host lock,
		// taken below, tells it from one that still runs), or by the
		// node's own boot.
		klog.InfoS("Using imported pool", "pool", p.name)
	default:
		err := p.importPool(ctx, cfg)
		if err != nil && !errors.Is(err, ErrNotFound) {
			// zpool import fails when a dataset does not mount, after it
			// imported the pool: serve the rest (recover reports that one).
			if imp, ierr := p.imported(ctx); ierr == nil && imp {
				klog.ErrorS(err, "Imported the pool, but not every dataset mounted", "pool", p.name)
				err = nil
			}
		}
		switch {
		case err == nil:
			klog.InfoS("Imported pool", "pool", p.name, "vdevs", cfg.Vdevs)
		case errors.Is(err, ErrNotFound) && cfg.Create:
			if err := p.createPool(ctx, cfg); err != nil {
				return err
			}
			klog.InfoS("Created pool", "pool", p.name, "vdevs", cfg.Vdevs, "mountpoint", cfg.Mountpoint)
		default:
			return fmt.Errorf("pool %s: %w", p.name, err)
		}
	}
	if err := p.fenceImported(ctx, cfg); err != nil {
		return fmt.Errorf("pool %s: %w", p.name, err)
	}
	return nil
}

// setup runs on every Open: mountpoint, layout, backend capabilities,
// crash recovery.
func (p *Pool) setup(ctx context.Context, cfg Config) error {
	if cfg.Mountpoint != "" {
		t, err := p.getProps(ctx, depthSelf, []string{propMountpoint}, p.name)
		if err != nil {
			return err
		}
		if t.props[p.name].str(propMountpoint) != cfg.Mountpoint {
			if err := p.zfsSet(ctx, p.name, map[string]string{propMountpoint: cfg.Mountpoint}); err != nil {
				return err
			}
		}
	}
	if err := p.ensureLayout(ctx); err != nil {
		return err
	}
	// The state dataset holds the same-host lock: mount it and take the
	// lock before anything else changes the pool.
	t, err := p.getProps(ctx, depthSelf, []string{propMountpoint, propMounted}, p.stateDataset())
	if err != nil {
		return err
	}
	st := t.props[p.stateDataset()]
	if st.str(propMounted) != "yes" {
		if err := p.zfsMount(ctx, p.stateDataset()); err != nil {
			return err
		}
	}
	p.stateDir = st.str(propMountpoint)
	if cfg.Exclusive {
		if err := p.lockHost(p.stateDir); err != nil {
			return err
		}
	}
	if err := p.ensureReserve(ctx); err != nil {
		// A full pool serves without its reserve until space frees up.
		klog.ErrorS(err, "The pool has no emergency reserve yet", "pool", p.name)
	}
	if err := p.detectTunables(ctx); err != nil {
		return err
	}
	if err := p.recover(ctx); err != nil {
		return err
	}
	return p.loadIndex(ctx)
}

// Name is the pool's name.
func (p *Pool) Name() string { return p.name }

// StateDir is the mountpoint of POOL/dots/state: state that must move with
// the disk (the NFS server's recovery directory) lives there.
func (p *Pool) StateDir() string { return p.stateDir }

func (p *Pool) rootDataset() string    { return p.name + "/" + datasetRoot }
func (p *Pool) volumesDataset() string { return p.rootDataset() + "/" + datasetVolumes }
func (p *Pool) trashDataset() string   { return p.rootDataset() + "/" + datasetTrash }
func (p *Pool) stateDataset() string   { return p.rootDataset() + "/" + datasetState }
func (p *Pool) volumeDataset(name string) string {
	return p.volumesDataset() + "/" + name
}

func (p *Pool) imported(ctx context.Context) (bool, error) {
	_, err := p.run(ctx, command.Pool("list", "-H", "-o", "name", p.name))
	if err == nil {
		return true, nil
	}
	err = wrapErr("zpool list "+p.name, err)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}

// createPool creates missing vdev files (sparse) and the pool. Files it
// created are removed again when zpool create fails.
func (p *Pool) createPool(ctx context.Context, cfg Config) (err error) {
	var created []string
	defer func() {
		if err != nil {
			for _, f := range created {
				_ = os.Remove(f)
			}
		}
	}()
	for _, v := range cfg.Vdevs {
		if _, serr := os.Stat(v); serr == nil {
			continue
		} else if !os.IsNotExist(serr) {
			return fmt.Errorf("vdev %s: %w", v, serr)
		}
		if cfg.FileSize == 0 {
			return fmt.Errorf("%w: vdev %s does not exist and no file size is set", ErrInvalid, v)
		}
		if err := os.MkdirAll(filepath.Dir(v), 0o755); err != nil {
			return fmt.Errorf("vdev %s: %w", v, err)
		}
		f, err := os.OpenFile(v, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("vdev %s: %w", v, err)
		}
		created = append(created, v)
		terr := f.Truncate(cfg.FileSize)
		if cerr := f.Close(); terr == nil {
			terr = cerr
		}
		if terr != nil {
			return fmt.Errorf("vdev %s: %w", v, terr)
		}
	}
	_, err = p.run(ctx, command.Pool(p.createArgs(cfg)...))
	return wrapErr("zpool create "+p.name, err)
}

// ensureLayout creates dots' datasets that are missing. Trash, replicas
// and diverged copies are never mounted: the trash's datasets only exist
// for their snapshots, a replica must not change between increments, and
// neither costs one of zfs-fuse's scarce FUSE mounts.
func (p *Pool) ensureLayout(ctx context.Context) error {
	t, err := p.getProps(ctx, 2, []string{propType}, p.name)
	if err != nil {
		return err
	}
	layout := []struct {
		name  string
		props map[string]string
	}{
		{p.rootDataset(), nil},
		{p.volumesDataset(), nil},
		{p.trashDataset(), map[string]string{propMountpoint: "none", propCanmount: "off"}},
		{p.replicasDataset(), map[string]string{propMountpoint: "none", propCanmount: "off"}},
		{p.divergedDataset(), map[string]string{propMountpoint: "none", propCanmount: "off"}},
		{p.stateDataset(), nil},
	}
	for _, d := range layout {
		if _, ok := t.props[d.name]; ok {
			continue
		}
		if err := p.zfsCreate(ctx, d.name, d.props); err != nil && !errors.Is(err, ErrExists) {
			return err
		}
	}
	return nil
}

// detectTunables keeps the allow-listed properties this ZFS knows, so reads
// never ask for one it would reject (zfs-fuse has no sync).
func (p *Pool) detectTunables(ctx context.Context) error {
	out, err := p.run(ctx, command.Z("get", "-H", "-o", "property", "all", p.name))
	if err != nil {
		return wrapErr("zfs get all "+p.name, err)
	}
	known := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		known[strings.TrimSpace(l)] = true
	}
	p.tunables = nil
	for _, k := range Tunables {
		if known[k] {
			p.tunables = append(p.tunables, k)
		}
	}
	p.volProps = append([]string{propType, propMountpoint, propMounted, propRefquota, propRefreservation,
		propReferenced, propAvailable, propCreation, propOrigin,
		propName, propCapacity, propSource, propThick, propExportID, propCreated, propTrashed,
		propSquash, propAnon, propPublished, propGeneration, propReplicas, propReplInterval}, p.tunables...)
	klog.V(2).InfoS("ZFS tunables", "pool", p.name, "supported", p.tunables)
	return nil
}

// Healthy reports an error unless the pool is ONLINE. It implements the
// server's Health check.
func (p *Pool) Healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := p.run(ctx, command.Pool("list", "-H", "-o", "health", p.name))
	if err != nil {
		return wrapErr("zpool list "+p.name, err)
	}
	if h := strings.TrimSpace(string(out)); h != "ONLINE" {
		return fmt.Errorf("pool %s is %s", p.name, h)
	}
	return nil
}

// ExportPool exports the pool cleanly so another node can import it.
func (p *Pool) ExportPool(ctx context.Context) error {
	// The lock file is on a dataset the export unmounts.
	if err := p.Close(); err != nil {
		klog.ErrorS(err, "Releasing the same-host lock", "pool", p.name)
	}
	op := "zpool export " + p.name
	err := retryBusy(ctx, op, func() error {
		_, err := p.run(ctx, command.Pool("export", p.name))
		return wrapErr(op, err)
	})
	if err == nil {
		klog.InfoS("Exported pool", "pool", p.name)
	}
	return err
}

// DestroyPool destroys the pool and everything in it (tests, local stack).
func (p *Pool) DestroyPool(ctx context.Context) error {
	_ = p.Close() // the lock file is on a dataset the destroy unmounts
	return DestroyImportedPool(ctx, p.runner, p.name)
}

// DestroyImportedPool destroys the pool called name, if it is imported,
// without opening it (a pool left by an earlier run of the local stack or a
// test). When it stays busy, a last attempt forces the unmounts. A pool
// that is not imported is left alone: its files are the caller's.
func DestroyImportedPool(ctx context.Context, r command.Runner, name string) error {
	if err := ValidatePoolName(name); err != nil {
		return err
	}
	op := "zpool destroy " + name
	err := retryBusy(ctx, op, func() error {
		_, err := r.Run(ctx, command.Pool("destroy", name))
		return wrapErr(op, err)
	})
	if errors.Is(err, ErrBusy) {
		_, ferr := r.Run(ctx, command.Pool("destroy", "-f", name))
		err = wrapErr(op+" -f", ferr)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err == nil:
		klog.InfoS("Destroyed pool", "pool", name)
	}
	return err
}

// sortedKeys returns the names of a prop table that pass keep, sorted.
func sortedKeys(t *propTable, keep func(string, dsProps) bool) []string {
	var out []string
	for _, n := range t.order {
		if keep(n, t.props[n]) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
