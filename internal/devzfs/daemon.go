// Package devzfs is the ZFS machinery of development machines and tests:
// starting the zfs-fuse daemon where no ZFS kernel module is loaded. It is
// not used by a storage server, which expects the host's ZFS to be there.
package devzfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// EnsureDaemon starts the zfs-fuse daemon when neither it nor a kernel ZFS
// module is there, and waits until `zpool list` answers through r. One
// daemon serves the whole machine, so it is left running afterwards. On
// OpenZFS hosts (/dev/zfs exists) it only checks that the CLI answers.
func EnsureDaemon(ctx context.Context, r command.Runner) error {
	if _, err := os.Stat("/dev/zfs"); err != nil && !processRunning("zfs-fuse") {
		bin, err := exec.LookPath("zfs-fuse")
		if err != nil {
			return fmt.Errorf("no ZFS here: neither /dev/zfs nor zfs-fuse (run hack/deps.sh, or apt-get install -y zfs-fuse): %w", err)
		}
		klog.InfoS("Starting the zfs-fuse daemon", "binary", bin)
		cmd := exec.CommandContext(ctx, bin) // forks into the background by itself
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("starting zfs-fuse: %v: %s", err, out)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		_, err := r.Run(ctx, command.Pool("list", "-H", "-o", "name"))
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ZFS does not answer: %w", err)
		case <-t.C:
		}
	}
}

// processRunning looks for a process by its command name in /proc.
func processRunning(comm string) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return true
		}
	}
	return false
}
