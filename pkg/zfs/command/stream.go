package command

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// A stream (zfs send into Stdout, zfs recv from Stdin) takes as long as
// its data: a fixed deadline would kill every full send of a large volume.
// It is bounded by progress instead: killed after Timeouts.StreamIdle
// without a byte moving either way, and reported stuck only after
// StuckAfter without one.

// StalledError ends a stream that moved no byte for Idle. It is a
// deadline: errors.Is(err, context.DeadlineExceeded) holds.
type StalledError struct{ Idle time.Duration }

func (e *StalledError) Error() string {
	return fmt.Sprintf("no byte moved for %s: %v", e.Idle, context.DeadlineExceeded)
}

func (e *StalledError) Unwrap() error { return context.DeadlineExceeded }

// isStream says whether c is bounded by progress rather than a deadline.
func isStream(c Cmd) bool { return c.Stdin != nil || c.Stdout != nil }

// progress is when a stream last moved a byte.
type progress struct {
	now  func() time.Time
	last atomic.Int64 // unix nanoseconds
}

func newProgress(now func() time.Time) *progress {
	p := &progress{now: now}
	p.mark()
	return p
}

func (p *progress) mark()         { p.last.Store(p.now().UnixNano()) }
func (p *progress) at() time.Time { return time.Unix(0, p.last.Load()) }

// progressReader marks progress on every read that returned bytes.
type progressReader struct {
	r io.Reader
	p *progress
}

func (r progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		r.p.mark()
	}
	return n, err
}

// progressWriter marks progress on every write that took bytes.
type progressWriter struct {
	w io.Writer
	p *progress
}

func (w progressWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	if n > 0 {
		w.p.mark()
	}
	return n, err
}

// watchStream cancels ctx with a StalledError once p has not moved for
// idle; stop ends the watch.
func watchStream(ctx context.Context, cancel context.CancelCauseFunc, p *progress, idle time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTimer(idle)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				quiet := p.now().Sub(p.at())
				if quiet >= idle {
					cancel(&StalledError{Idle: idle})
					return
				}
				t.Reset(idle - quiet)
			}
		}
	}()
	return func() { close(done) }
}
