//go:build integration

package mounter

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// Checking the path of an unpublish must not hang on the dead mount it is
// meant to clean up: the mount point itself is never looked at. A path
// inside the dead mount is looked at, within the stat bound.
func TestRealConfinePathOfHungMount(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	kubelet := t.TempDir()
	h, err := New(Config{KubeletDir: kubelet, StatTimeout: 300 * time.Millisecond, UnmountTimeout: time.Second})
	must(t, err)
	target := filepath.Join(kubelet, "pods", "uid", "mount")
	release := mountDeadFuse(t, target, true)

	start := time.Now()
	got, err := h.ConfinePath(ctx, "target path", target)
	if err != nil || got != target {
		t.Fatalf("ConfinePath(hung mount point) = %q, %v", got, err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("checking a hung mount point took %v: it was looked at", d)
	}
	if _, err := h.ConfinePath(ctx, "target path", filepath.Join(target, "inside")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("ConfinePath(inside a hung mount) = %v, want ErrTimeout", err)
	}
	must(t, h.Unmount(ctx, target))
	release()
	waitNoPending(t, h)
}
