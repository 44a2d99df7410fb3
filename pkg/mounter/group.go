package mounter

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ErrGroupDenied: the volume's root cannot be given to a group, because
// the export squashes root (the node is not root on the volume).
var ErrGroupDenied = errors.New("the volume's root directory cannot be given to the group")

// ShareGroupFunc gives group gid write access to the directory path; the
// real one is shareGroup.
type ShareGroupFunc func(path string, gid uint32) error

// groupMode is what a shared volume root needs: the group may write, and
// files created in it inherit the group.
const groupMode = fs.ModeSetgid | 0o070

// shareGroup makes path belong to gid with groupMode added, unless it
// already does: only the root directory, O(1) whatever the volume holds
// (kubelet's fsGroup walk would chown every file).
func shareGroup(path string, gid uint32) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no ownership information", path)
	}
	mode := fi.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSetuid | fs.ModeSticky)
	if st.Gid == gid && mode&groupMode == groupMode {
		return nil
	}
	if st.Gid != gid {
		if err := os.Lchown(path, -1, int(gid)); err != nil {
			return err
		}
	}
	// After the chown, which clears set-id bits.
	return os.Chmod(path, mode|groupMode)
}

// ShareGroup gives group gid (a pod's fsGroup, handed over by kubelet
// through VOLUME_MOUNT_GROUP) write access to the root of the volume
// mounted at path. A squashed export refuses that to the node:
// ErrGroupDenied.
func (h *Host) ShareGroup(ctx context.Context, path string, gid uint32) error {
	err := boundedErr(ctx, h.calls, "chgrp "+path, h.statTimeout, func() error { return h.shareGroup(path, gid) })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %s to gid %d: %v (the export squashes root: create the volume with the StorageClass parameter gid=%d, or squash=none)",
			ErrGroupDenied, path, gid, err, gid)
	}
	return classify(path, err)
}
