package mounter

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	mount "k8s.io/mount-utils"

	"github.com/dots-csi/dots/pkg/api"
)

// DefaultKubeletDir is kubelet's default --root-dir: staging and target
// paths lie below it.
const DefaultKubeletDir = "/var/lib/kubelet"

// CheckKubeletDir accepts a kubelet directory: a clean absolute path other
// than /, since everything below it may be mounted over.
func CheckKubeletDir(dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" || strings.IndexByte(dir, 0) >= 0 {
		return fmt.Errorf("%w: the kubelet directory must be a clean absolute path other than /, not %q", ErrInvalidConfig, dir)
	}
	return nil
}

// ConfinePath implements Mounter. Nothing is created or mounted: it only
// reads the mount table and looks up the path's existing components.
func (h *Host) ConfinePath(ctx context.Context, what, p string) (string, error) {
	clean, err := belowLexically(h.kubeletDir, what, p)
	if err != nil {
		return "", err
	}
	mounts, err := h.mnt.List()
	if err != nil {
		return "", fmt.Errorf("list mounts: %w", err)
	}
	// Looking components up can hang inside a dead NFS mount, so it is
	// bounded like every other call on a path a request names.
	err = boundedErr(ctx, h.calls, "resolve "+clean, h.statTimeout, func() error {
		return resolveBelow(h.kubeletDir, clean, mounts)
	})
	if errors.Is(err, api.ErrInvalid) {
		return "", fmt.Errorf("%s %q: %w", what, p, err)
	}
	if err != nil {
		return "", classify(clean, err)
	}
	return clean, nil
}

// belowLexically checks what the path says, before anything on the host is
// looked at, and returns it cleaned.
func belowLexically(root, what, p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("%w: empty %s", api.ErrInvalid, what)
	case len(p) > maxPathLen:
		return "", fmt.Errorf("%w: %s is longer than %d bytes", api.ErrInvalid, what, maxPathLen)
	case badPathChar(p):
		return "", fmt.Errorf("%w: %s %q holds a NUL, whitespace, a backslash or a control character", api.ErrInvalid, what, p)
	case !filepath.IsAbs(p):
		return "", fmt.Errorf("%w: %s %q is not an absolute path", api.ErrInvalid, what, p)
	case hasDotDot(p):
		return "", fmt.Errorf("%w: %s %q holds a '..' component", api.ErrInvalid, what, p)
	}
	clean := filepath.Clean(p)
	if !strictlyBelow(clean, root) {
		return "", fmt.Errorf("%w: %s %q is not below the kubelet directory %s", api.ErrInvalid, what, p, root)
	}
	return clean, nil
}

// resolveBelow checks that clean, with the symlinks of its existing part
// resolved, is still strictly below root (resolved the same way). A mount
// point at clean is not looked at: it is a directory, never a symlink, and
// a stat of it hangs when its server is gone (an unpublish of a dead
// volume must still work).
func resolveBelow(root, clean string, mounts []mount.MountPoint) error {
	realRoot, err := resolveExisting(root)
	if err != nil {
		// The node's configuration, not the request, is wrong: no api.ErrInvalid.
		return fmt.Errorf("kubelet directory %s: %v", root, err)
	}
	parent, err := resolveExisting(filepath.Dir(clean))
	if err != nil {
		return err
	}
	resolved := filepath.Join(parent, filepath.Base(clean))
	if _, mounted := mountAt(mounts, resolved); !mounted {
		if resolved, err = resolveExisting(resolved); err != nil {
			return err
		}
	}
	if !strictlyBelow(resolved, realRoot) {
		return fmt.Errorf("%w: it resolves to %s, outside the kubelet directory %s", api.ErrInvalid, resolved, realRoot)
	}
	return nil
}

// resolveExisting resolves the symlinks of the longest prefix of p that
// exists and appends the rest unchanged. An entry that exists but does not
// resolve (a dangling symlink, a loop) is refused: creating the rest below
// it would follow the link wherever it points.
func resolveExisting(p string) (string, error) {
	rest := ""
	for cur := p; ; cur = filepath.Dir(cur) {
		_, err := os.Lstat(cur)
		switch {
		case err == nil:
			target, err := filepath.EvalSymlinks(cur)
			if err != nil {
				return "", fmt.Errorf("%w: %s does not resolve (a dangling or looping symlink?): %v", api.ErrInvalid, cur, err)
			}
			return filepath.Join(target, rest), nil
		case errors.Is(err, syscall.ELOOP):
			return "", fmt.Errorf("%w: %s: %v", api.ErrInvalid, cur, err)
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return "", err
		case cur == "/":
			// Lstat("/") cannot fail with ENOENT; kept so the loop ends.
			return filepath.Join("/", rest), nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
	}
}

// strictlyBelow reports whether the clean path p lies below dir, not at it.
func strictlyBelow(p, dir string) bool {
	return strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/") && p != dir
}

// hasDotDot reports a ".." component, refused outright rather than cleaned
// away: a request that climbs is never one kubelet sends.
func hasDotDot(p string) bool {
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return true
		}
	}
	return false
}

// badPathChar reports characters a node path may not hold: NUL and other
// controls, whitespace and backslashes, which the mount table escapes, so
// the path could not be found there again.
func badPathChar(p string) bool {
	for _, r := range p {
		if r <= ' ' || r == 0x7f || r == '\\' {
			return true
		}
	}
	return false
}
