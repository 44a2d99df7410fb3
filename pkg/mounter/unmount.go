package mounter

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// maxStacked bounds how many mounts stacked on one path Unmount removes.
const maxStacked = 8

// Unmount implements Mounter.
func (h *Host) Unmount(ctx context.Context, target string) error {
	if err := checkLocalPath("path", target); err != nil {
		return err
	}
	target = filepath.Clean(target)
	for i := 0; ; i++ {
		mounts, err := h.mnt.List()
		if err != nil {
			return fmt.Errorf("list mounts: %w", err)
		}
		if _, ok := mountAt(mounts, target); !ok {
			break
		}
		if i == maxStacked {
			return fmt.Errorf("%s: still mounted after %d unmounts", target, maxStacked)
		}
		if err := h.unmountOnce(ctx, target); err != nil {
			return err
		}
	}
	// Remove, never RemoveAll: a file left in the directory while it was not
	// mounted is data we must not delete.
	err := boundedErr(ctx, h.calls, "remove "+target, h.statTimeout, func() error { return os.Remove(target) })
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", target, err)
	}
	return nil
}

// unmountOnce removes the top mount at target. A plain unmount gets
// unmountTimeout; if it times out or fails the way a dead server makes it
// fail, a forced unmount (umount -f, which aborts pending NFS requests) gets
// the same bound, then a lazy one (umount -l, which detaches the mount from
// the tree at once and frees it when its last user goes). A busy mount that
// still answers a stat is reported, not detached.
func (h *Host) unmountOnce(ctx context.Context, target string) error {
	attempts := []struct {
		name  string
		flags int
	}{
		{"umount", 0},
		{"umount -f", unix.MNT_FORCE},
		{"umount -l", unix.MNT_DETACH},
	}
	var last error
	for _, a := range attempts {
		err := boundedErr(ctx, h.calls, a.name+" "+target, h.unmountTimeout, func() error {
			return h.unmount(target, a.flags)
		})
		switch {
		case err == nil, errors.Is(err, syscall.EINVAL):
			// EINVAL: no longer a mount point, e.g. an earlier abandoned
			// attempt finished meanwhile.
			if a.flags != 0 {
				klog.InfoS("Unmounted after escalation", "path", target, "how", a.name)
			}
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case a.flags == 0 && errors.Is(err, syscall.EBUSY):
			// Busy on a live server is a user of the mount; busy on a dead
			// one is often a call stuck on it (possibly one of ours).
			if herr := h.checkMounted(ctx, target); !errors.Is(herr, ErrStale) && !errors.Is(herr, ErrTimeout) {
				return fmt.Errorf("%w: %s: %w", ErrBusy, target, err)
			}
		case !errors.Is(err, ErrTimeout) && !isStaleErrno(err) && !errors.Is(err, syscall.EBUSY):
			return fmt.Errorf("%s %s: %w", a.name, target, err)
		}
		klog.InfoS("Unmount did not complete; escalating", "path", target, "attempt", a.name, "err", err)
		last = err
	}
	return fmt.Errorf("unmount %s: every attempt failed: %w", target, last)
}
