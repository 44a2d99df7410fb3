package mounter

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	mount "k8s.io/mount-utils"
)

// Mount modes.
const (
	// ModeNFS mounts the volume's export over NFSv4; every real node uses it.
	ModeNFS = "nfs"
	// ModeLocalBind bind-mounts the dataset's own mountpoint. It is a
	// development mode for a single-machine stack whose kernel has no NFS
	// client, and works only when the storage server runs on this machine.
	ModeLocalBind = "local-bind"
)

// plan is what to mount at a staging path.
type plan struct {
	source  string
	fstype  string
	options []string
	// device is what the mount table will show as the staged mount's
	// source, used to recognise an existing correct mount.
	device   string
	readOnly bool
}

// mode turns a volume into a mount plan.
type mode interface {
	name() string
	plan(vol Volume, flags []string, readOnly bool, mounts []mount.MountPoint) (plan, error)
	// checkFlags validates mount flags as plan does, without a volume.
	checkFlags(flags []string, readOnly bool) error
	// isSourcePath reports whether a mount point is the server side of a
	// volume, never a publish target.
	isSourcePath(path string) bool
}

type nfsMode struct{}

func (nfsMode) name() string { return ModeNFS }

func (nfsMode) plan(vol Volume, flags []string, readOnly bool, _ []mount.MountPoint) (plan, error) {
	src, err := vol.NFSSource()
	if err != nil {
		return plan{}, err
	}
	if readOnly {
		// A reader-only access mode: add ro so a user's rw is reported as a conflict.
		flags = append(append([]string(nil), flags...), "ro")
	}
	opts, err := NFSMountOptions(flags, vol.Port)
	if err != nil {
		return plan{}, err
	}
	ro := false
	for _, o := range opts {
		ro = ro || o == "ro"
	}
	return plan{source: src, fstype: "nfs4", options: opts, device: src, readOnly: ro}, nil
}

func (nfsMode) checkFlags(flags []string, _ bool) error {
	_, err := NFSMountOptions(flags, 0)
	return err
}

func (nfsMode) isSourcePath(string) bool { return false }

// VolumesDir is where a storage server whose pool is mounted at mountRoot
// mounts its volumes (the datasets POOL/dots/volumes/NAME): the directory a
// local-bind node binds from.
func VolumesDir(mountRoot string) string {
	return filepath.Join(mountRoot, "dots", "volumes")
}

// localBindMode binds only volumes: mount points directly below one of the
// volumes directories, so a volume context can never make the node plugin
// expose another host directory, the pool's internal datasets (its state,
// beside the volumes) or a volumes directory as a whole.
type localBindMode struct {
	roots []bindRoot
}

// bindRoot is a volumes directory as configured and with its symlinks
// resolved.
type bindRoot struct {
	given, resolved string
}

func (localBindMode) name() string { return ModeLocalBind }

func (m localBindMode) plan(vol Volume, flags []string, readOnly bool, mounts []mount.MountPoint) (plan, error) {
	if hasDotDot(vol.LocalPath) {
		return plan{}, fmt.Errorf("%w: local path %q holds a '..' component", ErrOutsideRoot, vol.LocalPath)
	}
	if err := checkPath("local path", vol.LocalPath); err != nil {
		return plan{}, err
	}
	if !m.isVolume(vol.LocalPath, false) {
		return plan{}, fmt.Errorf("%w: local path %s is not directly below a volumes directory (%s)", ErrOutsideRoot, vol.LocalPath, m.given())
	}
	resolved, err := filepath.EvalSymlinks(vol.LocalPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return plan{}, fmt.Errorf("%w: local path %s: %v", ErrNotFound, vol.LocalPath, err)
		}
		return plan{}, fmt.Errorf("local path %s: %w", vol.LocalPath, err)
	}
	if !m.isVolume(resolved, true) {
		return plan{}, fmt.Errorf("%w: local path %s resolves to %s, not directly below a volumes directory (%s)", ErrOutsideRoot, vol.LocalPath, resolved, m.given())
	}
	mp, ok := mountAt(mounts, resolved)
	if !ok {
		return plan{}, fmt.Errorf("%w: local path %s is not the dataset's own mountpoint", ErrNotMountPoint, resolved)
	}
	opts, err := bindOptions(flags, readOnly)
	if err != nil {
		return plan{}, err
	}
	return plan{source: resolved, options: opts, device: mp.Device, readOnly: hasOption(opts, "ro")}, nil
}

// isVolume reports whether the clean path p is exactly one component below
// a volumes directory: as configured or resolved (a path as the server
// reports it), or only resolved (a path whose symlinks are resolved).
func (m localBindMode) isVolume(p string, resolved bool) bool {
	dir := filepath.Dir(p)
	for _, r := range m.roots {
		if dir == r.resolved || (!resolved && dir == r.given) {
			return true
		}
	}
	return false
}

func (localBindMode) checkFlags(flags []string, readOnly bool) error {
	_, err := bindOptions(flags, readOnly)
	return err
}

func (m localBindMode) given() string {
	roots := make([]string, 0, len(m.roots))
	for _, r := range m.roots {
		roots = append(roots, r.given)
	}
	return strings.Join(roots, ", ")
}

func (m localBindMode) isSourcePath(p string) bool {
	for _, r := range m.roots {
		if p == r.resolved || mount.PathWithinBase(p, r.resolved) {
			return true
		}
	}
	return false
}

// mountAt returns the topmost mount at path.
func mountAt(mounts []mount.MountPoint, path string) (mount.MountPoint, bool) {
	path = filepath.Clean(path)
	var found mount.MountPoint
	ok := false
	for _, mp := range mounts {
		if mp.Path == path {
			found, ok = mp, true
		}
	}
	return found, ok
}

func hasOption(opts []string, want string) bool {
	for _, o := range opts {
		if o == want {
			return true
		}
	}
	return false
}

// sameDevice compares mount sources, ignoring a trailing slash on an NFS export.
func sameDevice(a, b string) bool {
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}
