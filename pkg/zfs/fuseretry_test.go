package zfs

import (
	"context"
	"errors"
	"testing"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// flaky fails its first fails runs as a command that lost zfs-fuse's
// daemon, then succeeds, counting runs.
type flaky struct {
	fails, runs int
}

func (f *flaky) Run(_ context.Context, c command.Cmd) ([]byte, error) {
	f.runs++
	if f.runs <= f.fails {
		return nil, &command.Error{Cmd: c.String(), Stderr: "internal error: Connection reset by peer", Err: errors.New("exit status 1")}
	}
	return []byte("ok"), nil
}

func TestRetryLostDaemon(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cmd      command.Cmd
		fails    int
		wantRuns int
		wantErr  bool
	}{
		{command.Z("get", "-Hp", "used", "p"), 2, 3, false},  // a read is run again
		{command.Pool("status", "p"), 1, 2, false},           // zpool's too
		{command.Z("get", "-Hp", "used", "p"), 5, 3, true},   // within a bound
		{command.Z("create", "p/v"), 1, 1, true},             // a change is not
		{command.Z("set", "refquota=1M", "p/v"), 1, 1, true}, // (its caller decides)
	} {
		f := &flaky{fails: tc.fails}
		out, err := retryLostDaemon(f).Run(ctx, tc.cmd)
		if f.runs != tc.wantRuns || (err != nil) != tc.wantErr || (err == nil && string(out) != "ok") {
			t.Errorf("%s failing %d times: %d runs, err %v; want %d runs, error %t", tc.cmd, tc.fails, f.runs, err, tc.wantRuns, tc.wantErr)
		}
	}
}
