package zfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// The OpenZFS kernel module a storage server needs. The image brings the
// userland (zfs, zpool); the module is the node's. A node without it, or
// with a module of another release series than the userland, cannot run a
// server: CheckModule says so before anything touches a pool, so the
// server stops with that reason instead of failing on its first zpool
// command. zfs-fuse has no kernel module: the check is OpenZFS's.

var (
	// ErrModuleMissing is a host without the OpenZFS kernel module loaded.
	ErrModuleMissing = errors.New("the OpenZFS kernel module is not loaded")
	// ErrModuleMismatch is a module of another release series than the
	// userland, or one whose version cannot be read.
	ErrModuleMismatch = errors.New("the OpenZFS kernel module does not match the userland")
)

// ModuleCheck is what CheckModule compared.
type ModuleCheck struct {
	Kernel   string // the loaded module's version, e.g. "2.1.11-1" (/sys/module/zfs/version)
	Userland string // the zfs command's, e.g. "2.1.11-1" (`zfs version`)
	// PatchDiffers: the same release series (major.minor), other patch
	// releases. OpenZFS keeps the interface between them within a series.
	PatchDiffers bool
}

// moduleVersion reads the leading MAJOR.MINOR[.PATCH] of a version such
// as "2.1.11-1", "2.2.2-0ubuntu9" or "2.3.0-rc1".
var moduleVersion = regexp.MustCompile(`^(\d+)\.(\d+)(?:\.(\d+))?`)

// CheckModule decides whether the OpenZFS kernel module under root ("/"
// on a host; a directory of fake files in tests) can serve the given
// userland version (UserlandVersion): the module must be loaded
// (root/sys/module/zfs) and of the userland's release series (major and
// minor version; /sys/module/zfs/version). A missing module is
// ErrModuleMissing whatever the userland; "" as userland (it could not be
// read) fails the comparison.
func CheckModule(root, userland string) (ModuleCheck, error) {
	mc := ModuleCheck{Userland: userland}
	dir := filepath.Join(root, "sys", "module", "zfs")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return mc, fmt.Errorf("%w on this node (%s does not exist): install OpenZFS %s and load it (modprobe zfs), "+
			"or run storage servers only on nodes that have it", ErrModuleMissing, dir, series(userland))
	} else if err != nil {
		return mc, fmt.Errorf("%w: %v", ErrModuleMismatch, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "version"))
	if err != nil {
		return mc, fmt.Errorf("%w: its version cannot be read: %v", ErrModuleMismatch, err)
	}
	mc.Kernel = strings.TrimSpace(string(b))
	k := moduleVersion.FindStringSubmatch(mc.Kernel)
	if k == nil {
		return mc, fmt.Errorf("%w: the module's version %q is not a version", ErrModuleMismatch, mc.Kernel)
	}
	u := moduleVersion.FindStringSubmatch(userland)
	if u == nil {
		return mc, fmt.Errorf("%w: the userland's version %q is not a version (the module is %s)", ErrModuleMismatch, userland, mc.Kernel)
	}
	if k[1] != u[1] || k[2] != u[2] {
		return mc, fmt.Errorf("%w: the node's module is %s, this image's zfs userland is %s: OpenZFS supports a userland "+
			"of the module's release series only (%s.%s here): run these servers on nodes with an OpenZFS %s.%s module, "+
			"or an image whose userland is %s.%s", ErrModuleMismatch, mc.Kernel, userland, k[1], k[2], u[1], u[2], k[1], k[2])
	}
	mc.PatchDiffers = k[3] != u[3]
	return mc, nil
}

// series names a version's release series for messages ("2.1.x").
func series(v string) string {
	if m := moduleVersion.FindStringSubmatch(v); m != nil {
		return m[1] + "." + m[2] + ".x"
	}
	return "(the image's version)"
}

// UserlandVersion runs `zfs version` (OpenZFS 0.8 and later) and returns
// the userland's version from its first line ("zfs-2.1.11-1"). The second
// line, the module's ("zfs-kmod-..."), is not needed: CheckModule reads
// the module's own file. Without a module the command fails after printing
// the userland line, which is still read.
func UserlandVersion(ctx context.Context, r command.Runner) (string, error) {
	out, err := r.Run(ctx, command.Z("version"))
	if v, ok := parseUserland(string(out)); ok {
		return v, nil
	}
	if err != nil {
		return "", fmt.Errorf("zfs version: %w", err)
	}
	return "", fmt.Errorf("zfs version printed no userland version: %q", firstLine(string(out)))
}

// parseUserland finds "zfs-VERSION" (not "zfs-kmod-VERSION") in the output
// of `zfs version`.
func parseUserland(out string) (string, bool) {
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "zfs-"); ok && !strings.HasPrefix(v, "kmod-") && moduleVersion.MatchString(v) {
			return v, true
		}
	}
	return "", false
}
