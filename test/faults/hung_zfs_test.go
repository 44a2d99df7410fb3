//go:build integration

package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/serverenv"
	"github.com/dots-csi/dots/pkg/server"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// TestHungZFSCommand hangs one real zfs command (a snapshot, stopped before
// it runs, as one stuck in the kernel would sit) and checks what the issue
// promised: the call answers DeadlineExceeded at the command's deadline,
// the command's process is gone, snapshots and creates of other volumes go
// on meanwhile, the volume's lock is free for the retry, and /readyz names
// the stuck command while it lasts.
func TestHungZFSCommand(t *testing.T) {
	realZFS, err := exec.LookPath("zfs")
	if err != nil {
		t.Fatal(err)
	}
	start0 := time.Now()
	const deadline = 6 * time.Second
	var pool string
	s := serverenv.Start(t, "dotsf", "hung", func(c *server.Config) {
		pool = c.Pool
		c.ZFSBinary = wrapper(t, realZFS, `"snapshot `+c.Pool+`/dots/volumes/stuck@snap"`, stopItself)
		c.ZFSTimeouts = command.Timeouts{Short: time.Minute, Long: deadline, StuckAfter: time.Second}
	})
	ctrl, _ := s.Client()
	ctx := context.Background()
	for _, v := range []string{"stuck", "other"} {
		if _, err := ctrl.CreateVolume(ctx, createReq(v, 16<<20)); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	hung := make(chan error, 1)
	go func() {
		_, err := ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "stuck"})
		hung <- err
	}()
	var stuck process
	poll.Until(t, deadline, "the snapshot's zfs is stopped", func() error {
		ps := processes("snapshot", pool+"/dots/volumes/stuck@snap")
		if len(ps) != 1 || ps[0].state != "T" {
			return fmt.Errorf("processes %+v", ps)
		}
		stuck = ps[0]
		return nil
	})

	// While it hangs: /readyz names it, and other volumes are served.
	poll.Until(t, deadline, "/readyz reports the stuck command", func() error {
		code, body, err := readyz(s.HTTP)
		if err == nil && (code != http.StatusServiceUnavailable || !strings.Contains(body, "zfs snapshot")) {
			err = fmt.Errorf("%d %q", code, body)
		}
		return err
	})
	if _, err := ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "other-snap", SourceVolumeId: "other"}); err != nil {
		t.Errorf("snapshot of another volume while one hangs: %v", err)
	}
	if _, err := ctrl.CreateVolume(ctx, createReq("fresh", 16<<20)); err != nil {
		t.Errorf("create while a snapshot hangs: %v", err)
	}
	othersDone := time.Since(start)
	if _, err := ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "stuck"}); status.Code(err) != codes.Aborted {
		t.Errorf("a retry while the first call runs: %v, want Aborted", err)
	}

	var hungErr error
	select {
	case hungErr = <-hung:
	case <-time.After(deadline + time.Minute):
		t.Fatal("the hung call never returned")
	}
	returned := time.Since(start)
	if status.Code(hungErr) != codes.DeadlineExceeded {
		t.Errorf("hung snapshot: %v, want DeadlineExceeded", hungErr)
	}
	if returned < deadline || returned > deadline+10*time.Second {
		t.Errorf("hung snapshot answered after %s; its deadline is %s", returned, deadline)
	}
	if othersDone >= returned {
		t.Errorf("other volumes' calls finished after %s, not before the hung one (%s)", othersDone, returned)
	}
	poll.Until(t, 10*time.Second, "the stuck command's process gone", func() error {
		for _, p := range processes("snapshot", pool+"/dots/volumes/stuck@snap") {
			if p.pid == stuck.pid {
				return errors.New("still there")
			}
		}
		return nil
	})
	poll.Until(t, 10*time.Second, "/readyz ready again", func() error {
		code, body, err := readyz(s.HTTP)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %q", code, body)
		}
		return err
	})
	// The lock is free and the retry is the real zfs.
	if _, err := ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "stuck"}); err != nil {
		t.Errorf("retry after the deadline: %v", err)
	}
	fmt.Printf("faults: hung-zfs ok acked=5 lost=0 orphans=0 duration_s=%.1f deadline_s=%.1f answered_s=%.1f others_done_s=%.1f\n",
		time.Since(start0).Seconds(), deadline.Seconds(), returned.Seconds(), othersDone.Seconds())
}
