package zfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// EnsureDaemon starts the zfs-fuse daemon when neither it nor a kernel ZFS
// module is there, and waits until `zpool list` answers. One daemon serves
// the whole machine, so it is left running afterwards. On OpenZFS hosts
// (/dev/zfs exists) it only checks that the CLI answers.
func EnsureDaemon(ctx context.Context) error {
	if _, err := os.Stat("/dev/zfs"); err != nil && !processRunning("zfs-fuse") {
		bin, err := exec.LookPath("zfs-fuse")
		if err != nil {
			return fmt.Errorf("no ZFS here: neither /dev/zfs nor zfs-fuse (run hack/deps.sh, or apt-get install -y zfs-fuse): %w", err)
		}
		klog.InfoS("Starting the zfs-fuse daemon", "binary", bin)
		cmd := exec.Command(bin) // forks into the background by itself
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("starting zfs-fuse: %v: %s", err, out)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := HostExec{}.Run(ctx, "zpool", "list", "-H", "-o", "name")
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ZFS does not answer: %w", err)
		case <-time.After(100 * time.Millisecond):
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

// DestroyPoolIfExists destroys an imported pool by name; a pool that is not
// imported is left alone (its files are the caller's to remove).
func DestroyPoolIfExists(ctx context.Context, name string) error {
	if err := ValidatePoolName(name); err != nil {
		return err
	}
	p := &Pool{name: name, exec: HostExec{}}
	imported, err := p.imported(ctx)
	if err != nil || !imported {
		return err
	}
	err = p.DestroyPool(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
