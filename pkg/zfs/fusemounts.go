package zfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// DefaultMountLock is the file whose flock makes mounts on zfs-fuse take
// turns across every process of the host (see SerializeMounts).
const DefaultMountLock = "/run/lock/dots-zfs-fuse-mounts.lock"

// SerializeMounts returns a runner that runs the commands that may mount a
// dataset one at a time on the whole host, under an exclusive flock of
// lockPath; other commands pass straight through.
//
// Why, on zfs-fuse only: its daemon hands each new mount to its FUSE
// listener through one pipe in two unsynchronised writes (the mount's
// description, then its path). Two mounts at the same moment, from any
// processes, can interleave them; the listener then waits for bytes that
// never come while holding the lock every FUSE request needs, and every
// zfs-fuse mount on the machine hangs until the daemon is killed (seen in
// CI: one daemon thread reading the pipe, every other waiting on a futex,
// `zfs create` stuck in fuse_get_req). OpenZFS mounts in the kernel and
// needs none of this.
func SerializeMounts(next command.Runner, lockPath string) command.Runner {
	return &mountTurns{next: next, path: lockPath}
}

// MountTurnTaker is a runner that takes zfs-fuse's mount turns itself:
// SerializeMounts' runner, or a wrapper of one. Open does not wrap it
// again, so what the wrapper sees is what its callers asked for.
type MountTurnTaker interface {
	command.Runner
	TakesMountTurns()
}

type mountTurns struct {
	next command.Runner
	path string
}

// TakesMountTurns implements MountTurnTaker.
func (m *mountTurns) TakesMountTurns() {}

// Run implements command.Runner.
func (m *mountTurns) Run(ctx context.Context, c command.Cmd) ([]byte, error) {
	if !mayMount(c) || ctx.Value(turnHeld{m.path}) != nil {
		return m.next.Run(ctx, c)
	}
	unlock, err := flockCtx(ctx, m.path)
	if err != nil {
		return nil, &command.Error{Cmd: c.String(), Err: fmt.Errorf("waiting for zfs-fuse's mount turn (%s): %w", m.path, err)}
	}
	defer unlock()
	return m.next.Run(context.WithValue(ctx, turnHeld{m.path}, true), c)
}

// turnHeld marks a context whose command holds the turn of a lock file:
// a runner wrapped twice (a test's runner given to a pool) must not wait
// for the turn its outer layer holds.
type turnHeld struct{ path string }

// mayMount says whether c can mount a dataset: creating, cloning,
// renaming (a remount), mounting, rolling back, promoting (libzfs may
// remount what moves between datasets), or changing where or whether a
// dataset mounts; creating or importing a pool. A receive lands
// under a mountpoint=none parent here (replicas) and never mounts; a
// destroy or an unmount only unmounts.
func mayMount(c command.Cmd) bool {
	sub := c.Subcommand()
	if c.Tool == command.Zpool {
		return sub == "create" || sub == "import"
	}
	switch sub {
	case "create", "clone", "rename", "mount", "rollback", "promote", "inherit":
		return true
	case "set":
		for _, a := range c.Args[1:] {
			if prop, _, ok := strings.Cut(a, "="); ok && (prop == propMountpoint || prop == propCanmount) {
				return true
			}
		}
	}
	return false
}

// flockCtx takes an exclusive flock of path (created), or gives up when
// ctx ends. flock cannot be interrupted, so a lock that comes after ctx
// ended is released at once by the goroutine that waited for it.
func flockCtx(ctx context.Context, path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	got := make(chan error, 1)
	go func() { got <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, err
		}
		return func() { f.Close() }, nil // closing the file releases the lock
	case <-ctx.Done():
		go func() {
			<-got
			f.Close()
		}()
		return nil, ctx.Err()
	}
}
