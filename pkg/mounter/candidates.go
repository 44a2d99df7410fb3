package mounter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"
)

// Stage mounts vol at target: StageFrom with one location.
func (h *Host) Stage(ctx context.Context, vol Volume, target string, flags []string, readOnly bool) error {
	_, err := h.StageFrom(ctx, []Volume{vol}, target, flags, readOnly)
	return err
}

// StageFrom implements Mounter. Only a volume's primary serves it (a
// replica is never exported and lives outside the volumes directory), so
// the first location that mounts is the primary; the order only saves
// tries. With several locations each try is bounded by the try timeout,
// and an nfs-mode try gets retry=0 unless the flags set retry, so mount(8)
// gives up on a refused connection at once instead of retrying for its
// default two minutes.
func (h *Host) StageFrom(ctx context.Context, vols []Volume, target string, flags []string, readOnly bool, opts ...StageOption) (Volume, error) {
	var o stageOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(vols) == 0 {
		return Volume{}, fmt.Errorf("%w: no server to mount the volume from", ErrInvalidVolume)
	}
	if err := checkLocalPath("staging path", target); err != nil {
		return Volume{}, err
	}
	target = filepath.Clean(target)
	several := len(vols) > 1
	bounded := several || o.boundEachTry
	if bounded {
		// The flags are the same for every location: a bad one is the
		// request's fault, not a server's.
		if err := h.mode.checkFlags(flags, readOnly); err != nil {
			return Volume{}, err
		}
		if h.mode.name() == ModeNFS && !hasOptionKey(flags, "retry") {
			flags = append(append([]string(nil), flags...), "retry=0")
		}
	}
	mounts, err := h.mnt.List()
	if err != nil {
		return Volume{}, fmt.Errorf("list mounts: %w", err)
	}
	plans := make([]plan, len(vols))
	planErrs := make([]error, len(vols))
	for i, v := range vols {
		plans[i], planErrs[i] = h.mode.plan(v, flags, readOnly, mounts)
	}
	if !several && planErrs[0] != nil {
		return Volume{}, notServed{planErrs[0]}
	}
	if existing, ok := mountAt(mounts, target); ok {
		done, i, err := h.reuse(ctx, existing, target, plans)
		if err != nil {
			return Volume{}, err
		}
		if done {
			return vols[i], nil
		}
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return Volume{}, fmt.Errorf("create staging path: %w", err)
	}
	var tried []string
	for i, v := range vols {
		err := planErrs[i]
		if err == nil {
			err = h.mountTry(ctx, v, plans[i], target, bounded)
		}
		if err == nil {
			return v, nil
		}
		if !several {
			return Volume{}, notServed{err}
		}
		tried = append(tried, fmt.Sprintf("%s: %v", v, err))
		klog.InfoS("Server does not serve the volume; trying the next", "volumeID", v.ID, "server", v.Server, "location", v.String(), "err", err)
		if ctx.Err() != nil {
			return Volume{}, fmt.Errorf("%w: volume %s: tried %s: %w", ErrNoServer, v.ID, strings.Join(tried, "; "), ctx.Err())
		}
	}
	return Volume{}, fmt.Errorf("%w: volume %s: tried %s", ErrNoServer, vols[0].ID, strings.Join(tried, "; "))
}

// StageOption adjusts StageFrom.
type StageOption func(*stageOptions)

type stageOptions struct {
	boundEachTry bool
}

// BoundEachTry bounds each try (and gives nfs tries retry=0) even when
// there is one location, as there are with several: a server found by
// discovery, tried after the listed ones failed.
func BoundEachTry() StageOption {
	return func(o *stageOptions) { o.boundEachTry = true }
}

// notServed marks the error of a sole location that did not serve the
// volume (it could not be planned or mounted), leaving its message and
// its sentinels (and so its gRPC code) as they are.
type notServed struct{ err error }

func (e notServed) Error() string { return e.err.Error() }
func (e notServed) Unwrap() error { return e.err }

// NotServed reports an error of StageFrom that says the locations tried
// do not serve the volume (ErrNoServer, or a sole location's failure), as
// opposed to one about the request or the staging path, so another server
// may be tried.
func NotServed(err error) bool {
	var ns notServed
	return errors.Is(err, ErrNoServer) || errors.As(err, &ns)
}

// mountTry mounts one location's plan at target, within the try timeout
// when bounded.
func (h *Host) mountTry(ctx context.Context, v Volume, p plan, target string, bounded bool) error {
	if h.mode.name() == ModeLocalBind {
		klog.InfoS("local-bind (development mode): staging the dataset's own mountpoint", "volumeID", v.ID, "source", p.source, "stagingPath", target)
	}
	klog.V(4).InfoS("Mounting", "volumeID", v.ID, "server", v.Server, "source", p.source, "target", target, "fstype", p.fstype, "options", p.options)
	var timeout = h.tryTimeout
	if !bounded {
		timeout = 0
	}
	if p.fstype == "nfs4" && h.nfsMount != nil {
		// The mount itself is ended at the deadline, not left running: a
		// late success would stack a server the node moved on from over
		// the next one's mount.
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			tctx, cancel = context.WithTimeout(ctx, timeout)
		}
		defer cancel()
		err := h.nfsMount(tctx, p.source, target, p.options)
		if err != nil && ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: mount %s after %v: %v", ErrTimeout, p.source, timeout, err)
		}
		return err
	}
	// Keyed by source and target: a kubelet retry of the same try joins
	// a mount still running instead of starting a second one.
	return boundedErr(ctx, h.calls, "mount "+p.source+" at "+target, timeout, func() error {
		return h.mnt.Mount(p.source, target, p.fstype, p.options)
	})
}

// reuse decides what to do with a mount already at target, given the
// plans it may have come from (a plan with no device is skipped): keep it
// (done, and which plan), report a conflict, or, when it is stale, unmount
// it so the caller mounts again.
func (h *Host) reuse(ctx context.Context, existing mount.MountPoint, target string, plans []plan) (done bool, which int, err error) {
	err = h.checkMounted(ctx, target)
	switch {
	case err == nil:
		var want []string
		for i, p := range plans {
			if p.device == "" {
				continue
			}
			if !sameDevice(existing.Device, p.device) {
				want = append(want, p.device)
				continue
			}
			if hasOption(existing.Opts, "ro") != p.readOnly {
				return true, i, fmt.Errorf("%w: %s is mounted with read-only=%v, asked read-only=%v", ErrMountConflict, target, !p.readOnly, p.readOnly)
			}
			return true, i, nil
		}
		if len(want) == 0 {
			return true, 0, fmt.Errorf("%w: %s is mounted from %s, and no listed server could be checked against it", ErrMountConflict, target, existing.Device)
		}
		return true, 0, fmt.Errorf("%w: %s is mounted from %s, not %s", ErrMountConflict, target, existing.Device, strings.Join(want, " or "))
	case errors.Is(err, ErrStale), errors.Is(err, ErrTimeout):
		klog.InfoS("Stale mount found; unmounting to mount again", "path", target, "err", err)
		if err := h.Unmount(ctx, target); err != nil {
			return true, 0, fmt.Errorf("recover stale mount: %w", err)
		}
		return false, 0, nil
	}
	return true, 0, err
}

// hasOptionKey reports an option KEY or KEY=VALUE among flags.
func hasOptionKey(flags []string, key string) bool {
	for _, f := range flags {
		if f == key || strings.HasPrefix(f, key+"=") {
			return true
		}
	}
	return false
}
