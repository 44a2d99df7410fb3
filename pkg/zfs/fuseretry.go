package zfs

import (
	"context"
	"errors"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// retryLostDaemon returns a runner that runs a read-only command again when
// zfs-fuse's command lost its connection to the daemon ("Connection reset
// by peer", "file descriptor closed"), which it does now and then under
// load while the daemon lives on. Reads are safe to repeat; a command that
// changes the pool is not repeated here (its callers' busy retries decide,
// knowing whether it may have happened).
func retryLostDaemon(next command.Runner) command.Runner { return &lostDaemonRetry{next: next} }

type lostDaemonRetry struct{ next command.Runner }

// lostDaemonAttempts bounds the runs of one read.
const lostDaemonAttempts = 3

// Run implements command.Runner.
func (r *lostDaemonRetry) Run(ctx context.Context, c command.Cmd) ([]byte, error) {
	delay := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		out, err := r.next.Run(ctx, c)
		if err == nil || !readOnly(c) || !lostDaemon(err) || attempt == lostDaemonAttempts {
			return out, err
		}
		klog.V(2).InfoS("zfs-fuse command lost its daemon connection; running it again", "cmd", c.String(), "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(delay):
		}
		delay *= 5
	}
}

// readOnly says whether c only reads.
func readOnly(c command.Cmd) bool {
	switch c.Subcommand() {
	case "get", "list", "status", "version":
		return c.Stdout == nil && c.Stdin == nil
	}
	return false
}

// lostDaemon says whether err is a zfs-fuse command that lost its
// connection to the daemon.
func lostDaemon(err error) bool {
	var ce *command.Error
	if !errors.As(err, &ce) {
		return false
	}
	return strings.Contains(ce.Stderr, "Connection reset by peer") ||
		strings.Contains(ce.Stderr, "zfsfuse_ioctl_read_loop(): file descriptor closed")
}
