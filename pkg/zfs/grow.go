package zfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// Growing a pool with its disk. A server's pool lives on a block device
// (its PV, volumeMode Block) or on a file on a mounted PV. When the PV is
// expanded (the cloud grows the disk, the kubelet its file system), the
// pool does not grow until ZFS is told:
//
//   - GrowFiles, run before the pool is imported, grows a file vdev to the
//     configured size (--pool-file-size), the Filesystem mode's way;
//   - a Grower sets autoexpand=on and runs `zpool online -e POOL VDEV` for
//     every vdev when the server starts, and for each vdev that has grown
//     since it last looked, every interval.
//
// OpenZFS uses the new space at once. zfs-fuse (measured on a file vdev
// grown with truncate) accepts autoexpand and `online -e` but uses the new
// size only when the pool is imported again, at the server's next start,
// with or without autoexpand; the Grower says so in its log.

// GrowFiles grows each regular file among vdevs that is smaller than size
// to size (sparse), and returns the files it grew. It never shrinks a
// file, leaves block devices and missing files alone (Open creates
// those), and refuses a size larger than the file system the file is on:
// a sparse file could claim more than there is, and the pool would fail
// its writes once the file system is full.
func GrowFiles(vdevs []string, size int64) ([]string, error) {
	if size <= 0 {
		return nil, nil
	}
	var grown []string
	for _, v := range vdevs {
		st, err := os.Stat(v)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return grown, fmt.Errorf("vdev %s: %w", v, err)
		}
		if !st.Mode().IsRegular() || st.Size() >= size {
			continue
		}
		var fs syscall.Statfs_t
		if err := syscall.Statfs(v, &fs); err != nil {
			return grown, fmt.Errorf("vdev %s: %w", v, err)
		}
		if total := int64(fs.Blocks) * fs.Bsize; size > total {
			return grown, fmt.Errorf("%w: vdev %s: %d bytes asked, its file system holds %d: expand the volume it is on first",
				ErrInvalid, v, size, total)
		}
		if err := os.Truncate(v, size); err != nil {
			return grown, fmt.Errorf("vdev %s: %w", v, err)
		}
		klog.InfoS("Grew the pool's file", "vdev", v, "from", st.Size(), "to", size)
		grown = append(grown, v)
	}
	return grown, nil
}

// Grower lets a pool use the space its vdevs gain. Safe for concurrent
// use.
type Grower struct {
	pool   *Pool
	vdevs  []string
	sizeOf func(path string) (int64, error)

	mu         sync.Mutex
	autoexpand bool             // set on the pool
	told       map[string]int64 // each vdev's size when the pool was last told
}

// NewGrower watches the pool's vdevs (their paths as the pool was opened
// with them).
func NewGrower(p *Pool, vdevs []string) *Grower {
	return &Grower{pool: p, vdevs: vdevs, sizeOf: vdevSize, told: map[string]int64{}}
}

// vdevSize is the size of a file or block device: where its end is.
func vdevSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

// Check sets autoexpand=on on its first call, then runs `zpool online -e`
// for every vdev whose size grew since the pool was last told (every vdev
// on the first call: it may have grown while no server ran). It returns
// the vdevs it told the pool about; a vdev whose command failed is tried
// again at the next call.
func (g *Grower) Check(ctx context.Context) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.pool
	if !g.autoexpand {
		// On OpenZFS the pool then also grows when it is imported, and when
		// ZED sees a device grow where ZED runs.
		if _, err := p.run(ctx, command.Pool("set", "autoexpand=on", p.name)); err != nil {
			return nil, wrapErr("zpool set autoexpand=on "+p.name, err)
		}
		g.autoexpand = true
	}
	var told []string
	var errs []error
	for _, v := range g.vdevs {
		size, err := g.sizeOf(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("vdev %s: %w", v, err))
			continue
		}
		last, seen := g.told[v]
		if seen && size <= last {
			continue
		}
		var before Capacity
		if seen {
			before, _ = p.Capacity(ctx) // for the log line only
		}
		if _, err := p.run(ctx, command.Pool("online", "-e", p.name, v)); err != nil {
			errs = append(errs, wrapErr(fmt.Sprintf("zpool online -e %s %s", p.name, v), err))
			continue
		}
		g.told[v] = size
		told = append(told, v)
		if !seen {
			klog.V(2).InfoS("The pool uses all of its vdev", "pool", p.name, "vdev", v, "vdevBytes", size)
			continue
		}
		after, _ := p.Capacity(ctx)
		klog.InfoS("A vdev of the pool grew: the pool was told to use it", "pool", p.name, "vdev", v,
			"vdevBytesBefore", last, "vdevBytes", size, "poolBytesBefore", before.Size, "poolBytes", after.Size)
		if !p.flavor.GrowsOnline {
			klog.InfoS("This ZFS uses a grown vdev only once the pool is imported again: the new space is there after the server's next start",
				"pool", p.name, "flavor", p.flavor.CLI)
		}
	}
	return told, errors.Join(errs...)
}

// Run calls Check every interval until ctx ends.
func (g *Grower) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := g.Check(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Checking whether the pool's vdevs grew; tried again later", "pool", g.pool.name)
		}
	}
}
