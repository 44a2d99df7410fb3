//go:build integration

package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
)

// TestSIGKILLLeavesNoZFSChild kills a storage server (the real binary, in
// its own process) while it runs zfs commands for a burst of creates, one
// of which would run on for minutes (it became a sleep), and checks that
// none of its commands outlives it: a command that went on would change the
// pool behind the back of the next server. The server is then started
// again on the same pool and serves.
func TestSIGKILLLeavesNoZFSChild(t *testing.T) {
	realZFS, err := exec.LookPath("zfs")
	if err != nil {
		t.Fatal(err)
	}
	tp := testenv.NewTestPool(t, "dotsf")
	ports := testenv.FreeTCPPorts(t, 2)
	api := "127.0.0.1:" + strconv.Itoa(ports[0])
	args := []string{"server", "--name", "killed", "--endpoint", "tcp://" + api, "--http-address", "127.0.0.1:0",
		"--run-dir", tp.Dir + "/run", "--pool", tp.Name, "--vdev", tp.Vdev, "--create-pool", "--pool-file-size", "1Gi",
		"--mount-root", tp.Mountpoint, "--nfs-port", strconv.Itoa(ports[1]), "--nfs-bind-address", "127.0.0.1",
		"--nfs-clients", "127.0.0.0/8", "--default-volume-size", "16Mi",
		"--zfs-binary", wrapper(t, realZFS, `"create "*`+tp.Name+`/dots/volumes/v1-*`, becomeSleep)}
	srv := startServerProcess(t, args)
	conn, err := grpc.NewClient("passthrough:///"+api, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
		for _, p := range append(processes(tp.Name), processes("sleep 300")...) {
			if p.ppid == srv.Process.Pid {
				inFlight = append(inFlight, p)
			}
		}
		return nil
	})
	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = srv.Wait()
	stop()
	wg.Wait()

	// The kernel kills each child as its parent dies; give it the moment
	// a SIGKILL takes to land.
	var survivors []process
	err = poll.Wait(10*time.Second, func() error {
		survivors = nil
		for _, p := range append(processes(tp.Name), processes("sleep 300")...) {
			if p.ppid != os.Getpid() { // the test's own clients are not the server's
				survivors = append(survivors, p)
			}
		}
		if len(survivors) > 0 {
			return fmt.Errorf("%d zfs commands alive", len(survivors))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("zfs commands outlived the killed server: %+v", survivors)
	}

	// A new server opens the pool the dead one left imported, and serves.
	again := startServerProcess(t, args)
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := ctrl.CreateVolume(cctx, createReq("after", 16<<20), grpc.WaitForReady(true)); err != nil {
		t.Errorf("create on the restarted server: %v", err)
	}
	_ = again.Process.Signal(syscall.SIGTERM)
	_ = again.Wait()
	fmt.Printf("faults: sigkill-in-flight ok acked=%d zfs_in_flight=%d survivors=0\n", acked.Load(), len(inFlight))
}

// startServerProcess runs `dots server` and waits for its ready log line.
// It is killed at the end of the test if still running.
func startServerProcess(t *testing.T, args []string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(testenv.DotsBinary(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	ready, exited := make(chan struct{}), make(chan string, 1)
	go func() {
		var log strings.Builder
		signalled := false
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "Storage server ready") {
				close(ready)
				signalled = true
			}
		}
		exited <- log.String()
	}()
	select {
	case <-ready:
	case log := <-exited:
		t.Fatalf("dots server exited before it was ready:\n%s", log)
	case <-time.After(2 * time.Minute):
		t.Fatalf("dots server not ready within 2 minutes")
	}
	return cmd
}
