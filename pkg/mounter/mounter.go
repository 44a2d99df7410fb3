// Package mounter mounts dots volumes on a node: the volume's export at a
// staging path (nfs mode, or a bind of the dataset's mountpoint in the
// local-bind development mode), bind mounts of the staging path at publish
// targets, and unmounts that cannot hang on a dead server. Every call that
// touches a possibly dead mount is bounded; the host (mount table, stat,
// statfs, unmount) sits behind seams so the logic is unit-testable.
package mounter

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"
)

// Defaults for Config's timeouts.
const (
	DefaultStatTimeout    = 10 * time.Second
	DefaultUnmountTimeout = 15 * time.Second
	// DefaultMountTryTimeout bounds one server's mount try when a volume
	// lists several servers (StageFrom).
	DefaultMountTryTimeout = 20 * time.Second
)

// Mounter is what the CSI node service needs from the host.
type Mounter interface {
	// Mode is the mount mode name (ModeNFS or ModeLocalBind).
	Mode() string
	// KubeletDir is the directory every staging and target path lies below.
	KubeletDir() string
	// ConfinePath checks a staging or target path of a request before
	// anything is done with it, and returns it cleaned: it must be an
	// absolute path without "..", strictly below the kubelet directory,
	// and still so once the symlinks of its existing part are resolved.
	// Any other path is api.ErrInvalid.
	ConfinePath(ctx context.Context, what, path string) (string, error)
	// StageFrom mounts the volume at target from the first of vols (one
	// location per server that may hold it, primary first) that serves it,
	// creating the directory, and returns the one used. An existing correct
	// mount of any of them is success; a stale one is unmounted and mounted
	// again; another mount there is ErrMountConflict. With one location the
	// error is that location's; with several, ErrNoServer naming each and
	// why it failed.
	StageFrom(ctx context.Context, vols []Volume, target string, flags []string, readOnly bool, opts ...StageOption) (Volume, error)
	// Publish bind mounts the staged mount at target, read-only if asked
	// (or if the staged mount is), with the same idempotence as Stage. A
	// staging path that is not mounted is ErrNotMountPoint.
	Publish(ctx context.Context, staging, target string, readOnly bool) error
	// Unmount unmounts target (force, then lazy, when the server does not
	// answer) and removes the directory. A missing target is success.
	Unmount(ctx context.Context, target string) error
	// Stats returns the usage of the filesystem mounted at path.
	Stats(ctx context.Context, path string) (Usage, error)
	// Check reports whether a healthy mount is at path: nil, or ErrNotFound,
	// ErrNotMountPoint, ErrStale, ErrTimeout.
	Check(ctx context.Context, path string) error
	// ShareGroup gives a group write access to the root of the volume
	// mounted at path (see Host.ShareGroup).
	ShareGroup(ctx context.Context, path string, gid uint32) error
	// PublishedTargets lists the mount points, other than staging itself,
	// that show the filesystem staged at staging: its publish targets.
	PublishedTargets(staging string) ([]string, error)
}

// Usage is a filesystem's capacity in bytes and inodes.
type Usage struct {
	TotalBytes, AvailableBytes, UsedBytes    int64
	TotalInodes, AvailableInodes, UsedInodes int64
}

// StatFunc stats a path; os.Stat on the real host.
type StatFunc func(path string) error

// StatfsFunc is statfs(2); unix.Statfs on the real host.
type StatfsFunc func(path string, buf *unix.Statfs_t) error

// UnmountFunc is umount2(2) with flags 0, unix.MNT_FORCE or unix.MNT_DETACH.
type UnmountFunc func(target string, flags int) error

// Config configures New. Zero host seams mean the real host.
type Config struct {
	// Mode is ModeNFS (the default when empty) or ModeLocalBind.
	Mode string
	// LocalBindRoots are the volumes directories of the storage servers on
	// this machine (VolumesDir of each server's mount root): a local-bind
	// source must be directly below one of them. Required by ModeLocalBind.
	LocalBindRoots []string
	// KubeletDir is the directory staging and target paths must lie below
	// (ConfinePath); DefaultKubeletDir when empty.
	KubeletDir string
	// StatTimeout bounds each stat and statfs (health, stale checks, stats).
	StatTimeout time.Duration
	// UnmountTimeout bounds each unmount attempt: plain, then force, then lazy.
	UnmountTimeout time.Duration
	// MountTryTimeout bounds each server's mount try when a volume lists
	// several (a single server's mount is bounded by the caller's context
	// only, as before candidates existed).
	MountTryTimeout time.Duration

	// Mount is the mount table and mounter; mount-utils without systemd when nil.
	Mount mount.Interface
	// Stat, Statfs, Unmount default to the real syscalls. When Mount is set
	// and Unmount is not, unmounts go through Mount.Unmount (force and lazy
	// then retry the same call), so a fake Mount never reaches the host.
	Stat       StatFunc
	Statfs     StatfsFunc
	Unmount    UnmountFunc
	ShareGroup ShareGroupFunc
	// NFSMount mounts an NFS export and must give up, ending the attempt,
	// when ctx ends. When nil: mount(8) in its own process group, killed
	// with ctx (RunMountCommand), or Mount.Mount when Mount is set (so a
	// fake table never reaches the host).
	NFSMount NFSMountFunc
}

// NFSMountFunc mounts source (ADDR:/EXPORT) at target as nfs4 with options.
type NFSMountFunc func(ctx context.Context, source, target string, options []string) error

// Host implements Mounter on this machine.
type Host struct {
	mode           mode
	kubeletDir     string
	mnt            mount.Interface
	stat           StatFunc
	statfs         StatfsFunc
	unmount        UnmountFunc
	shareGroup     ShareGroupFunc
	nfsMount       NFSMountFunc
	statTimeout    time.Duration
	unmountTimeout time.Duration
	tryTimeout     time.Duration
	calls          *inflight
}

var _ Mounter = (*Host)(nil)

// New validates cfg and returns a Host.
func New(cfg Config) (*Host, error) {
	if cfg.StatTimeout < 0 || cfg.UnmountTimeout < 0 || cfg.MountTryTimeout < 0 {
		return nil, fmt.Errorf("%w: negative timeout", ErrInvalidConfig)
	}
	if cfg.KubeletDir == "" {
		cfg.KubeletDir = DefaultKubeletDir
	}
	if err := CheckKubeletDir(cfg.KubeletDir); err != nil {
		return nil, err
	}
	h := &Host{
		kubeletDir:     cfg.KubeletDir,
		mnt:            cfg.Mount,
		stat:           cfg.Stat,
		statfs:         cfg.Statfs,
		unmount:        cfg.Unmount,
		shareGroup:     cfg.ShareGroup,
		nfsMount:       cfg.NFSMount,
		statTimeout:    cfg.StatTimeout,
		unmountTimeout: cfg.UnmountTimeout,
		tryTimeout:     cfg.MountTryTimeout,
		calls:          newInflight(),
	}
	switch cfg.Mode {
	case ModeNFS, "":
		if len(cfg.LocalBindRoots) != 0 {
			return nil, fmt.Errorf("%w: local-bind roots are set but the mode is %s", ErrInvalidConfig, ModeNFS)
		}
		h.mode = nfsMode{}
	case ModeLocalBind:
		if len(cfg.LocalBindRoots) == 0 {
			return nil, fmt.Errorf("%w: mode %s needs at least one local-bind root", ErrInvalidConfig, ModeLocalBind)
		}
		var m localBindMode
		for _, r := range cfg.LocalBindRoots {
			root, err := localBindRoot(r)
			if err != nil {
				return nil, err
			}
			m.roots = append(m.roots, root)
		}
		h.mode = m
	default:
		return nil, fmt.Errorf("%w: unknown mount mode %q (want %s or %s)", ErrInvalidConfig, cfg.Mode, ModeNFS, ModeLocalBind)
	}
	if h.statTimeout == 0 {
		h.statTimeout = DefaultStatTimeout
	}
	if h.unmountTimeout == 0 {
		h.unmountTimeout = DefaultUnmountTimeout
	}
	if h.tryTimeout == 0 {
		h.tryTimeout = DefaultMountTryTimeout
	}
	if h.nfsMount == nil && h.mnt == nil {
		h.nfsMount = func(ctx context.Context, source, target string, options []string) error {
			return RunMountCommand(ctx, "mount", "-t", "nfs4", "-o", strings.Join(options, ","), source, target)
		}
	}
	if h.unmount == nil {
		if h.mnt != nil {
			m := h.mnt
			h.unmount = func(target string, _ int) error { return m.Unmount(target) }
		} else {
			h.unmount = sysUnmount
		}
	}
	if h.mnt == nil {
		h.mnt = mount.NewWithoutSystemd("")
	}
	if h.stat == nil {
		h.stat = func(p string) error { _, err := os.Stat(p); return err }
	}
	if h.statfs == nil {
		h.statfs = unix.Statfs
	}
	if h.shareGroup == nil {
		h.shareGroup = shareGroup
	}
	if _, ok := h.mode.(localBindMode); ok {
		klog.InfoS("Mount mode local-bind: DEVELOPMENT ONLY, volumes are bind mounts of dataset mountpoints on this machine, not NFS mounts",
			"localBindRoots", cfg.LocalBindRoots, "kubeletDir", h.kubeletDir)
	} else {
		klog.InfoS("Mount mode nfs", "defaultOptions", DefaultNFSOptions, "kubeletDir", h.kubeletDir)
	}
	return h, nil
}

// localBindRoot checks a volumes directory and resolves its symlinks once:
// it must exist when the node starts (its server has opened its pool).
func localBindRoot(root string) (bindRoot, error) {
	if !filepath.IsAbs(root) || filepath.Clean(root) != root {
		return bindRoot{}, fmt.Errorf("%w: a local-bind root must be a clean absolute path, not %q", ErrInvalidConfig, root)
	}
	resolved, err := filepath.EvalSymlinks(root)
	if err != nil {
		return bindRoot{}, fmt.Errorf("%w: local-bind root: %v", ErrInvalidConfig, err)
	}
	if resolved == "/" {
		return bindRoot{}, fmt.Errorf("%w: local-bind root must not be /", ErrInvalidConfig)
	}
	st, err := os.Stat(resolved)
	if err != nil || !st.IsDir() {
		return bindRoot{}, fmt.Errorf("%w: local-bind root %s is not a directory", ErrInvalidConfig, resolved)
	}
	return bindRoot{given: root, resolved: resolved}, nil
}

func sysUnmount(target string, flags int) error {
	if err := unix.Unmount(target, flags); err != nil {
		return &os.PathError{Op: "umount", Path: target, Err: err}
	}
	return nil
}

// Mode implements Mounter.
func (h *Host) Mode() string { return h.mode.name() }

// KubeletDir implements Mounter.
func (h *Host) KubeletDir() string { return h.kubeletDir }

// Publish implements Mounter.
func (h *Host) Publish(ctx context.Context, staging, target string, readOnly bool) error {
	if err := checkLocalPath("staging path", staging); err != nil {
		return err
	}
	if err := checkLocalPath("target path", target); err != nil {
		return err
	}
	staging, target = filepath.Clean(staging), filepath.Clean(target)
	mounts, err := h.mnt.List()
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	staged, ok := mountAt(mounts, staging)
	if !ok {
		return fmt.Errorf("%w: staging path %s is not mounted", ErrNotMountPoint, staging)
	}
	if err := h.checkMounted(ctx, staging); err != nil {
		return err
	}
	// A bind of a read-only mount is read-only whatever was asked (an ro
	// mount option in the StorageClass); say so, so a repeated call matches.
	readOnly = readOnly || hasOption(staged.Opts, "ro")
	if existing, ok := mountAt(mounts, target); ok {
		done, _, err := h.reuse(ctx, existing, target, []plan{{device: staged.Device, readOnly: readOnly}})
		if done || err != nil {
			return err
		}
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("create target path: %w", err)
	}
	// nosuid and nodev again: a bind mount's flags are its own.
	opts := []string{"bind", "nosuid", "nodev"}
	if readOnly {
		opts = append(opts, "ro")
	}
	klog.V(4).InfoS("Bind mounting", "source", staging, "target", target, "options", opts)
	return boundedErr(ctx, h.calls, "mount "+target, 0, func() error {
		return h.mnt.Mount(staging, target, "", opts)
	})
}

// Check implements Mounter.
func (h *Host) Check(ctx context.Context, path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%w: %q is not an absolute path", ErrNotFound, path)
	}
	mounts, err := h.mnt.List()
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	if _, ok := mountAt(mounts, path); !ok {
		return h.notMounted(ctx, path)
	}
	return h.checkMounted(ctx, path)
}

// checkMounted stats a path known to be a mount point, within the bound.
func (h *Host) checkMounted(ctx context.Context, path string) error {
	err := boundedErr(ctx, h.calls, "stat "+path, h.statTimeout, func() error { return h.stat(path) })
	return classify(path, err)
}

// notMounted tells ErrNotFound from ErrNotMountPoint for a path that is not
// in the mount table.
func (h *Host) notMounted(ctx context.Context, path string) error {
	err := boundedErr(ctx, h.calls, "stat "+path, h.statTimeout, func() error { return h.stat(path) })
	switch {
	case err == nil:
		return fmt.Errorf("%w: %s", ErrNotMountPoint, path)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	return classify(path, err)
}

// Stats implements Mounter.
func (h *Host) Stats(ctx context.Context, path string) (Usage, error) {
	if !filepath.IsAbs(path) {
		return Usage{}, fmt.Errorf("%w: %q is not an absolute path", ErrNotFound, path)
	}
	mounts, err := h.mnt.List()
	if err != nil {
		return Usage{}, fmt.Errorf("list mounts: %w", err)
	}
	if _, ok := mountAt(mounts, path); !ok {
		return Usage{}, h.notMounted(ctx, path)
	}
	st, err := bounded(ctx, h.calls, "statfs "+path, h.statTimeout, func() (unix.Statfs_t, error) {
		var st unix.Statfs_t
		err := h.statfs(path, &st)
		return st, err
	})
	if err != nil {
		return Usage{}, classify(path, err)
	}
	return usageOf(&st), nil
}

// usageOf converts statfs(2) output. Block counts are in fragment-size
// units when the filesystem reports one, as statvfs(3) does.
func usageOf(st *unix.Statfs_t) Usage {
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	used := uint64(0)
	if st.Blocks > st.Bfree {
		used = st.Blocks - st.Bfree
	}
	usedInodes := uint64(0)
	if st.Files > st.Ffree {
		usedInodes = st.Files - st.Ffree
	}
	return Usage{
		TotalBytes:      clamp(st.Blocks, bs),
		AvailableBytes:  clamp(st.Bavail, bs),
		UsedBytes:       clamp(used, bs),
		TotalInodes:     clamp(st.Files, 1),
		AvailableInodes: clamp(st.Ffree, 1),
		UsedInodes:      clamp(usedInodes, 1),
	}
}

// clamp multiplies without overflowing int64.
func clamp(n, size uint64) int64 {
	const maxInt64 = uint64(1<<63 - 1)
	if size != 0 && n > maxInt64/size {
		return int64(maxInt64)
	}
	return int64(n * size)
}

// PublishedTargets implements Mounter. The mount table is the record, so
// the answer survives a restart of the node plugin.
func (h *Host) PublishedTargets(staging string) ([]string, error) {
	mounts, err := h.mnt.List()
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	staging = filepath.Clean(staging)
	staged, ok := mountAt(mounts, staging)
	if !ok {
		return nil, nil
	}
	var targets []string
	for _, mp := range mounts {
		if mp.Path == staging || !sameDevice(mp.Device, staged.Device) || h.mode.isSourcePath(mp.Path) {
			continue
		}
		targets = append(targets, mp.Path)
	}
	return targets, nil
}
