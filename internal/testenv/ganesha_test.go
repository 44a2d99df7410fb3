//go:build integration

package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
)

func TestStartGanesha(t *testing.T) {
	dir := t.TempDir()
	env := testenv.StartGanesha(t, []nfs.Export{{ID: 1, Path: dir, Pseudo: "/dots/t", Clients: testenv.LoopbackClients}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := env.Client.WriteFile(ctx, "/dots/t", "hello", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "hello")); err != nil || string(got) != "hi" {
		t.Fatalf("on disk: %q %v", got, err)
	}
	if err := exec.Command("pgrep", "-x", "rpcbind").Run(); err != nil {
		t.Errorf("rpcbind not running: %v", err)
	}
}

// deadPid returns the pid of a process that has exited.
func deadPid(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestCleanStaleGanesha leaves a real ganesha behind as a crashed test run
// would (its run directory named after a dead pid) next to a live one, and
// checks that only the orphan is killed.
func TestCleanStaleGanesha(t *testing.T) {
	live := testenv.StartGanesha(t, nil)
	livePid := live.Pid()

	stale, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", testenv.GaneshaDirPrefix, deadPid(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(stale) })
	port := testenv.FreeTCPPorts(t, 1)[0]
	conf := filepath.Join(stale, "ganesha.conf")
	text := fmt.Sprintf(`NFS_CORE_PARAM { Protocols = 4; NFS_Port = %d; Bind_Addr = 127.0.0.1; Enable_UDP = false; Enable_NLM = false; Enable_RQUOTA = false; }
NFSV4 { RecoveryRoot = %q; }
`, port, filepath.Join(stale, "recovery"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	orphan := exec.Command("ganesha.nfsd", "-F", "-f", conf, "-L", filepath.Join(stale, "log"), "-p", filepath.Join(stale, "pid"))
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- orphan.Wait() }()
	t.Cleanup(func() { _ = orphan.Process.Kill() })
	poll.Until(t, 30*time.Second, "the orphan listens", func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	})

	testenv.CleanStaleGanesha(t)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the orphaned ganesha was not killed")
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale run directory %s not removed", stale)
	}
	if err := syscall.Kill(livePid, 0); err != nil || live.Pid() != livePid || live.Healthy() != nil {
		t.Errorf("the live test's ganesha was touched: %v, pid %d -> %d, healthy %v", err, livePid, live.Pid(), live.Healthy())
	}
}
