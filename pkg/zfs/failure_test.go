package zfs

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

func TestWrapErrClassifies(t *testing.T) {
	cases := map[string]error{
		"cannot open 'p/x': dataset does not exist":                                                              ErrNotFound,
		"cannot open 'p': no such pool":                                                                          ErrNotFound,
		"cannot import 'p': no such pool available":                                                              ErrNotFound,
		"cannot create 'p/x': dataset already exists":                                                            ErrExists,
		"cannot create 'p/x': out of space":                                                                      ErrNoSpace,
		"cannot set property for 'p/x': size is greater than available space":                                    ErrNoSpace,
		"cannot destroy 'p/x': dataset is busy":                                                                  ErrBusy,
		"zfsfuse_ioctl_read_loop(): file descriptor closed":                                                      ErrBusy,
		"get p: internal error: Connection reset by peer":                                                        ErrBusy,
		"cannot create 'p/x': 'compression' must be one of 'on | off'":                                           ErrInvalid,
		"cannot create 'p/x': 'recordsize' must be power of 2 from 512 to 128k":                                  ErrInvalid,
		"cannot create 'p/x': invalid property 'sync'":                                                           ErrInvalid,
		"cannot destroy 'p/x@s': snapshot has dependent clones\nuse '-R' to destroy":                             errHasClones,
		"cannot destroy 'p/x': filesystem has children\nuse '-r' to destroy the following":                       errHasChildren,
		"cannot import 'p': pool is imported on node-a (hostid: 0x5ac3e1)\nExport the pool on the other system":  ErrPoolInUse,
		"cannot import 'p': pool was previously in use from another system.\nLast accessed by node-a":            ErrPoolForeign,
		"cannot import 'p': pool may be in use from other system, it was last accessed by vm (hostid: 0x7f0100)": ErrPoolForeign,
	}
	for stderr, want := range cases {
		for _, src := range []error{
			&command.Error{Cmd: "zpool x", Stderr: stderr, Err: errors.New("exit status 1")},
			fmt.Errorf("wrapped: %w", &command.Error{Cmd: "zfs x", Stderr: stderr, Err: errors.New("exit status 1")}),
		} {
			err := wrapErr("op", src)
			if !errors.Is(err, want) {
				t.Errorf("wrapErr(%q) = %v, want %v", stderr, err, want)
			}
			if !errors.Is(err, src) {
				t.Errorf("wrapErr(%q) lost its cause", stderr)
			}
			if got := err.Error(); got != "op: "+firstLine(stderr) {
				t.Errorf("message = %q", got)
			}
		}
	}
	other := wrapErr("op", &command.Error{Stderr: "cannot import: I/O error", Err: errors.New("exit status 1")})
	for _, s := range []error{ErrNotFound, ErrExists, ErrNoSpace, ErrBusy, ErrInvalid} {
		if errors.Is(other, s) {
			t.Errorf("unclassified error matches %v", s)
		}
	}
	if wrapErr("op", nil) != nil {
		t.Error("wrapErr(nil) != nil")
	}
	if err := wrapErr("op", context.Canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("context error lost: %v", err)
	}
}

func TestRetryBusy(t *testing.T) {
	busy := &opError{op: "x", kind: ErrBusy, source: errors.New("busy")}
	calls := 0
	err := retryBusy(context.Background(), "op", func() error {
		calls++
		if calls < 3 {
			return busy
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("retryBusy = %v after %d calls, want success after 3", err, calls)
	}

	calls = 0
	err = retryBusy(context.Background(), "op", func() error { calls++; return ErrNotFound })
	if !errors.Is(err, ErrNotFound) || calls != 1 {
		t.Errorf("non-busy error retried: %v after %d calls", err, calls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
	defer cancel()
	calls = 0
	start := time.Now()
	err = retryBusy(ctx, "op", func() error { calls++; return busy })
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("retryBusy ignored its context: %v after %d calls", err, calls)
	}
}
