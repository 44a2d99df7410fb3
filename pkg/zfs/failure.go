package zfs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// errHasClones is returned (wrapped) when a snapshot cannot be destroyed
// because clones depend on it.
var errHasClones = errors.New("snapshot has dependent clones")

// errHasChildren: a dataset still has snapshots or children.
var errHasChildren = errors.New("dataset has children")

// opError wraps a failed ZFS command: it unwraps to the sentinel that
// classifies it (if any) and to the original error.
type opError struct {
	op     string
	msg    string
	kind   error
	source error
}

func (e *opError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("%s: %v", e.op, e.source)
	}
	return e.op + ": " + e.msg
}

func (e *opError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.source}
	}
	return []error{e.kind, e.source}
}

// stderrOf returns what a failed command printed on stderr.
func stderrOf(err error) (string, bool) {
	var ce *command.Error
	if errors.As(err, &ce) {
		return strings.TrimSpace(ce.Stderr), true
	}
	return "", false
}

// classify maps zfs's messages to sentinels. Messages are matched loosely:
// OpenZFS and zfs-fuse word some of them differently.
func classify(stderr string) error {
	s := strings.ToLower(stderr)
	switch {
	// zpool import: OpenZFS says "pool is imported on HOST (hostid: ...)"
	// when multihost sees the other host write, "was previously in use
	// from another system" when it was not exported (and, with multihost,
	// the other host is quiet); zfs-fuse "may be in use from other system".
	case strings.Contains(s, "is imported on"), strings.Contains(s, "currently imported by another system"):
		return ErrPoolInUse
	case strings.Contains(s, "in use from another system"), strings.Contains(s, "in use from other system"):
		return ErrPoolForeign
	case strings.Contains(s, "dependent clones"):
		return errHasClones
	case strings.Contains(s, "has children"):
		return errHasChildren
	case strings.Contains(s, "does not exist"), strings.Contains(s, "no such pool"),
		strings.Contains(s, "no such dataset"):
		return ErrNotFound
	case strings.Contains(s, "already exists"):
		return ErrExists
	case strings.Contains(s, "out of space"), strings.Contains(s, "greater than available space"),
		strings.Contains(s, "no space left"):
		return ErrNoSpace
	case strings.Contains(s, "is busy"), strings.Contains(s, "device busy"):
		return ErrBusy
	// zfs-fuse's command lost its ioctl connection to the daemon under
	// load (seen on a destroy among 8 concurrent ones, and as a reset on a
	// get): the daemon lives on, and the command is retried as busy ones
	// are (reads at once: retryLostDaemon).
	case strings.Contains(s, "zfsfuse_ioctl_read_loop(): file descriptor closed"),
		strings.Contains(s, "connection reset by peer"):
		return ErrBusy
	case strings.Contains(s, "invalid property"), strings.Contains(s, "bad property value"),
		strings.Contains(s, "must be one of"), strings.Contains(s, "must be power of"),
		strings.Contains(s, "must be a power of"), strings.Contains(s, "invalid value"),
		strings.Contains(s, "property may not be set"):
		return ErrInvalid
	}
	return nil
}

// wrapErr turns a command failure into an error naming the operation, with
// ZFS's own message, classified by sentinel. nil stays nil.
func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	stderr, ok := stderrOf(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	return &opError{op: op, msg: firstLine(stderr), kind: classify(stderr), source: err}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Busy retry: zfs-fuse reports "dataset is busy" for a moment after a
// dataset was created or unmounted, and an NFS server may hold one briefly.
// Retry with a doubling delay, about 6 s in all, then give up with ErrBusy.
// The first retries come quickly: after an unexport the busy moment is
// usually a few milliseconds, and a delete waits for all of it.
const (
	busyFirstDelay = 10 * time.Millisecond
	busyMaxDelay   = 1 * time.Second
	busyAttempts   = 13
)

// retryBusy runs fn until it succeeds, fails with something other than
// ErrBusy, the attempts run out or ctx ends.
func retryBusy(ctx context.Context, op string, fn func() error) error {
	return retryBusyN(ctx, op, busyAttempts, fn)
}

// retryBusyN is retryBusy with a given number of attempts.
func retryBusyN(ctx context.Context, op string, attempts int, fn func() error) error {
	delay := busyFirstDelay
	var err error
	for attempt := 1; ; attempt++ {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%s: %w", op, cerr)
		}
		err = fn()
		if err == nil || !errors.Is(err, ErrBusy) || attempt >= attempts {
			return err
		}
		klog.V(4).InfoS("ZFS busy, retrying", "op", op, "attempt", attempt, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %v)", op, ctx.Err(), err)
		case <-t.C:
		}
		delay = min(delay*2, busyMaxDelay)
	}
}
