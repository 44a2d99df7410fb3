package mounter

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// inflight runs filesystem calls that can block forever (any call on a hard
// NFS mount whose server is gone) on their own goroutine, and stops waiting
// after a bound. A blocked call cannot be cancelled, so it is left running;
// later callers with the same key join it instead of starting another, so a
// dead server costs one stuck goroutine per path and operation, not one per
// kubelet poll.
type inflight struct {
	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	done chan struct{}
	val  any
	err  error
}

func newInflight() *inflight {
	return &inflight{calls: make(map[string]*call)}
}

// pending reports how many calls are still running, for tests.
func (g *inflight) pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.calls)
}

// bounded runs fn under key and waits for it at most timeout (0: no bound
// beyond ctx). It returns ErrTimeout when the bound passes first and
// ctx.Err() when ctx ends first.
func bounded[T any](ctx context.Context, g *inflight, key string, timeout time.Duration, fn func() (T, error)) (T, error) {
	g.mu.Lock()
	c, joined := g.calls[key]
	if !joined {
		c = &call{done: make(chan struct{})}
		g.calls[key] = c
		go func() {
			v, err := fn()
			c.val, c.err = v, err
			g.mu.Lock()
			delete(g.calls, key)
			g.mu.Unlock()
			close(c.done)
		}()
	}
	g.mu.Unlock()

	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	var zero T
	select {
	case <-c.done:
		if c.err != nil {
			return zero, c.err
		}
		return c.val.(T), nil
	case <-expired:
		klog.InfoS("Filesystem call did not return in time; left running", "call", key, "timeout", timeout, "joined", joined)
		return zero, fmt.Errorf("%w: %s after %v", ErrTimeout, key, timeout)
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// boundedErr is bounded for calls that return only an error.
func boundedErr(ctx context.Context, g *inflight, key string, timeout time.Duration, fn func() error) error {
	_, err := bounded(ctx, g, key, timeout, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// isStaleErrno reports the errors a dead or restarted server produces: a
// file handle the server no longer knows (ESTALE), a dropped transport
// (ENOTCONN, also a FUSE daemon that went away), or an I/O error (EIO, a
// soft mount giving up).
func isStaleErrno(err error) bool {
	return errors.Is(err, syscall.ESTALE) || errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.EIO)
}

// classify turns the error of a stat-like call on path into a sentinel.
func classify(path string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTimeout), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case isStaleErrno(err):
		return fmt.Errorf("%w: %s: %w", ErrStale, path, err)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	return fmt.Errorf("%s: %w", path, err)
}
