package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"

	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// lockStateDir makes sure one stack at a time uses a state directory. The
// lock is an flock, so a crashed stack never leaves it held.
func lockStateDir(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		data, _ := os.ReadFile(path)
		f.Close()
		pid := strings.TrimSpace(string(data))
		return nil, fmt.Errorf("another dots local (pid %s) is running on %s; stop it first (Ctrl-C) or use another --state-dir", pid, filepath.Dir(path))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// discardPools destroys the stack's pools, whether imported or left behind
// as files by an earlier run, and removes their files and the placement
// records of their volumes.
func discardPools(ctx context.Context, r command.Runner, cfg Config) {
	files, _ := filepath.Glob(cfg.path("pools", "*.img"))
	for i := range max(cfg.Servers, len(files)) {
		name := cfg.poolName(i)
		if err := destroyPool(ctx, r, name); err != nil {
			klog.ErrorS(err, "Destroying a local pool", "pool", name)
		}
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			klog.ErrorS(err, "Removing a pool file", "file", f)
		}
	}
	_ = os.RemoveAll(cfg.path("mnt"))
	// Placements of volumes that went with the pools.
	_ = os.RemoveAll(cfg.path("placements"))
}

// destroyBusyFor bounds how long a pool zfs-fuse calls busy is tried again:
// right after its datasets were unmounted and its NFS server stopped, the
// daemon can hold it for several seconds, longer when other pools on the
// machine keep it busy.
const destroyBusyFor = 30 * time.Second

// destroyPool destroys a pool, trying again while zfs-fuse says it is busy
// (each DestroyImportedPool already retries for seconds, then forces).
func destroyPool(ctx context.Context, r command.Runner, name string) error {
	deadline := time.Now().Add(destroyBusyFor)
	for {
		err := zfs.DestroyImportedPool(ctx, r, name)
		if err == nil || !errors.Is(err, zfs.ErrBusy) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		klog.InfoS("The pool is still busy; destroying it again", "pool", name, "err", err)
	}
}

// unmountAll removes every mount of the stack's datasets other than the
// datasets' own mounts: what NodeStage and NodePublish made and a client
// never took down. Lazy unmount, so nothing can hang here.
func unmountAll(cfg Config, servers []*localServer) {
	infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
	if err != nil {
		klog.ErrorS(err, "Reading the mount table")
		return
	}
	own := cfg.path("mnt") + string(filepath.Separator)
	// Deepest first, so publish binds go before their staging mounts.
	for i := len(infos) - 1; i >= 0; i-- {
		mi := infos[i]
		if strings.HasPrefix(mi.MountPoint, own) || !ours(mi.Source, servers) {
			continue
		}
		if err := syscall.Unmount(mi.MountPoint, syscall.MNT_DETACH); err != nil {
			klog.ErrorS(err, "Unmounting a leftover volume mount", "path", mi.MountPoint)
			continue
		}
		klog.InfoS("Unmounted a leftover volume mount", "path", mi.MountPoint, "source", mi.Source)
	}
}

func ours(source string, servers []*localServer) bool {
	for _, s := range servers {
		if source == s.info.Pool || strings.HasPrefix(source, s.info.Pool+"/") {
			return true
		}
	}
	return false
}
