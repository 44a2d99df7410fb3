//go:build integration

package faults

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"google.golang.org/grpc"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// TestSIGKILLLeavesNoZFSChild kills a storage server (the real binary, in
// its own process) while it runs zfs commands for a burst of creates, one
// of which would run on for minutes (it became a sleep), and checks that
// none of its commands outlives it: a command that went on would change the
// pool behind the back of the next server. The server is then started
// again on the same pool and serves.
func TestSIGKILLLeavesNoZFSChild(t *testing.T) {
	begin := time.Now()
	realZFS, err := exec.LookPath("zfs")
	if err != nil {
		t.Fatal(err)
	}
	var srv *procServer
	// Worker 1's fourth create hangs, after the first creates were
	// acknowledged: on zfs-fuse a create holds the host's mount turn (see
	// zfs.SerializeMounts), so once it hangs no other create runs.
	srv = startProcServer(t, "dotsf", "killed", "--zfs-binary", wrapper(t, realZFS, `"create "*/dots/volumes/v1-3`, becomeSleep))
	conn, err := grpc.NewClient("passthrough:///"+srv.api, grpc.WithTransportCredentials(testenv.ClientCreds(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctrl := csi.NewControllerClient(conn)

	// Creates keep the server's zfs busy until it dies.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var acked atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := ctrl.CreateVolume(ctx, createReq(fmt.Sprintf("v%d-%d", w, i), 16<<20)); err != nil {
					return // the server is gone
				}
				acked.Add(1)
			}
		}()
	}
	// Kill it once creates were acknowledged and its long command runs.
	var inFlight []process
	poll.Until(t, time.Minute, "creates acknowledged and the server's long command running", func() error {
		if n := acked.Load(); n < 10 {
			return fmt.Errorf("%d creates acknowledged", n)
		}
		if len(processes("sleep 300")) == 0 {
			return errors.New("no long command yet")
		}
		inFlight = nil
		for _, p := range append(processes(srv.pool.Name), processes("sleep 300")...) {
			if p.ppid == srv.pid() {
				inFlight = append(inFlight, p)
			}
		}
		return nil
	})
	srv.kill()
	stop()
	wg.Wait()

	// The kernel kills each child as its parent dies; give it the moment
	// a SIGKILL takes to land.
	var survivors []process
	err = poll.Wait(10*time.Second, func() error {
		survivors = append(srv.strayCommands(), processes("sleep 300")...)
		if len(survivors) > 0 {
			return fmt.Errorf("%d commands alive", len(survivors))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("commands outlived the killed server: %+v", survivors)
	}

	// A new server opens the pool the dead one left imported, and serves.
	srv.start()
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := ctrl.CreateVolume(cctx, createReq("after", 16<<20), grpc.WaitForReady(true)); err != nil {
		t.Errorf("create on the restarted server: %v", err)
	}
	fmt.Printf("faults: sigkill-in-flight ok acked=%d lost=0 orphans=0 duration_s=%.1f zfs_in_flight=%d survivors=0\n",
		acked.Load(), time.Since(begin).Seconds(), len(inFlight))
}

// TestSIGTERMDuringStart stops a storage server while it is still opening
// its pool (one of its zfs commands hangs there): it exits at once, with
// its commands, instead of finishing a start nobody wants.
func TestSIGTERMDuringStart(t *testing.T) {
	realZFS, err := exec.LookPath("zfs")
	if err != nil {
		t.Fatal(err)
	}
	tp := testenv.NewTestPool(t, "dotsf")
	ports := testenv.FreeTCPPorts(t, 3)
	// The recovery pass reads the whole layout with one recursive get.
	zfs := wrapper(t, realZFS, `"get -Hp -o name,property,value,source -r "*`, becomeSleep)
	args := append([]string{"server", "--name", "starting", "--endpoint", fmt.Sprintf("tcp://127.0.0.1:%d", ports[0]),
		"--http-address", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--run-dir", tp.Dir + "/run", "--pool", tp.Name, "--vdev", tp.Vdev,
		"--create-pool", "--pool-file-size", "1Gi", "--mount-root", tp.Mountpoint, "--nfs-port", fmt.Sprint(ports[2]),
		"--nfs-bind-address", "127.0.0.1", "--nfs-clients", "127.0.0.0/8", "--zfs-binary", zfs}, testenv.ServerTLSFlags(t)...)
	cmd := exec.Command(testenv.DotsBinary(t), args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	poll.Until(t, time.Minute, "the start hanging in a zfs command", func() error {
		for _, p := range processes("sleep 300") {
			if p.ppid == cmd.Process.Pid {
				return nil
			}
		}
		return errors.New("not yet")
	})
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Logf("server exited %s after SIGTERM: %v", time.Since(t0).Round(time.Millisecond), err)
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not exit within 30 s of SIGTERM during its start")
	}
	poll.Until(t, 10*time.Second, "its hung command gone", func() error {
		if n := len(processes("sleep 300")); n > 0 {
			return fmt.Errorf("%d left", n)
		}
		return nil
	})
	fmt.Printf("faults: sigterm-during-start ok acked=0 lost=0 orphans=0 duration_s=%.1f\n", time.Since(t0).Seconds())
}
