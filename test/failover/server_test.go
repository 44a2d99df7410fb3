//go:build integration

package failover

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/netns"
	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
)

// Ports of the server on the VIP. Fixed: the VIP is the test's own
// address, so nothing else binds them, and clients need no rpcbind.
const (
	apiPort   = 7070
	httpPort  = 8080
	nfsPort   = 2049
	mountPort = 20048
)

// nodeServer is one run of `dots server` (the real binary) inside a
// node's namespace, bound to the VIP, on the shared pool.
type nodeServer struct {
	t       *testing.T
	node    *netns.Node
	runDir  string
	cmd     *osexec.Cmd
	done    chan struct{} // closed when the process is reaped
	exitErr error
	log     string // its stderr, kept in the run directory
	started time.Time
	readyAt time.Time
	grace   *graceWatch
}

// serverArgs are the flags of every run: the same pool, name and address
// wherever it runs, as a StatefulSet pod with its PV and Service would.
func (c *cluster) serverArgs(node *netns.Node, runDir string) []string {
	args := []string{"server", "--name", "failover-0",
		"--endpoint", fmt.Sprintf("tcp://%s:%d", c.vip, apiPort), "--http-address", fmt.Sprintf("%s:%d", c.vip, httpPort),
		"--run-dir", runDir, "--pool", c.pool.Name, "--vdev", c.pool.Vdev, "--create-pool", "--pool-file-size", "1Gi",
		"--mount-root", c.pool.Mountpoint, "--default-volume-size", "64Mi", "--reconcile-interval", "10s",
		"--nfs-port", strconv.Itoa(nfsPort), "--nfs-mount-port", strconv.Itoa(mountPort),
		"--nfs-bind-address", c.vip.String(), "--nfs-protocols", "3,4", "--nfs-minor-versions", "0,1,2",
		"--nfs-clients", c.net.Prefix.String(), "--export-access", "per-node", "--nfs-squash", "no_root_squash",
		// The hostid each node would write (not written on zfs-fuse: it
		// has no multihost).
		"--hostid-from", node.Name}
	return append(args, testenv.ServerTLSFlags(c.t)...)
}

// startServer runs the server in node's namespace and returns once it
// serves (its "Storage server ready" line).
func (c *cluster) startServer(t *testing.T, node *netns.Node) *nodeServer {
	t.Helper()
	runDir := filepath.Join(c.pool.Dir, "run-"+node.Name[strings.LastIndexByte(node.Name, '-')+1:])
	s := &nodeServer{t: t, node: node, runDir: runDir, done: make(chan struct{}), log: filepath.Join(runDir, "server.log")}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.grace = watchGrace(filepath.Join(runDir, "ganesha", "ganesha.log"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	cmd := node.Command(ctx, testenv.DotsBinary(t), c.serverArgs(node, runDir)...)
	// Ending the context stops it as Kubernetes would: SIGTERM, then
	// SIGKILL after the pod's grace period.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	ready, started := make(chan struct{}), make(chan error, 1)
	var once sync.Once
	s.started = time.Now()
	go func() {
		// Pdeathsig follows the forking thread: hold it until the server
		// is reaped, so a dead test leaves no server (nor its ganesha).
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer cancel()
		defer close(s.done)
		defer logFile.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			if strings.Contains(sc.Text(), "Storage server ready") {
				once.Do(func() { s.readyAt = time.Now(); close(ready) })
			}
		}
		s.exitErr = cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatalf("starting the server in %s: %v", node.Name, err)
	}
	s.cmd = cmd
	c.t.Cleanup(func() {
		s.stop(syscall.SIGTERM)
		s.grace.close()
		if c.t.Failed() {
			s.keepLog(c.t)
		}
	})
	select {
	case <-ready:
	case <-s.done:
		t.Fatalf("the server in %s exited before it was ready (%v):\n%s", node.Name, s.exitErr, s.tail(30))
	case <-time.After(2 * time.Minute):
		t.Fatalf("the server in %s not ready within 2 minutes:\n%s", node.Name, s.tail(30))
	}
	return s
}

// stop signals the server and waits until it is reaped.
func (s *nodeServer) stop(sig syscall.Signal) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(2 * time.Minute):
		s.t.Errorf("the server in %s did not exit within 2 minutes of %v", s.node.Name, sig)
	}
}

// crash kills the server, its NFS server and its zfs commands at once,
// with SIGKILL: nothing of it cleans up, as when its node dies.
func (s *nodeServer) crash() {
	s.t.Helper()
	pid := s.cmd.Process.Pid
	family := descendants(pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for _, p := range family {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	<-s.done
	poll.Until(s.t, 10*time.Second, "the killed server's processes gone", func() error {
		for _, p := range family {
			if testenv.PidAlive(p) {
				return fmt.Errorf("process %d alive", p)
			}
		}
		return nil
	})
}

// descendants lists the processes below pid (ganesha, zfs commands).
func descendants(pid int) []int {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		rest := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(rest) < 2 {
			continue
		}
		p, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		pp, _ := strconv.Atoi(rest[1])
		children[pp] = append(children[pp], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// keepLog copies the server's log (and its ganesha's) out of the test's
// temporary directory.
func (s *nodeServer) keepLog(t *testing.T) {
	for _, f := range []string{s.log, filepath.Join(s.runDir, "ganesha", "ganesha.log")} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		kept := filepath.Join(os.TempDir(), fmt.Sprintf("dots-failover-%d-%s-%s", os.Getpid(), filepath.Base(s.runDir), filepath.Base(f)))
		if os.WriteFile(kept, b, 0o644) == nil {
			t.Logf("kept %s", kept)
		}
	}
}

func (s *nodeServer) tail(n int) string {
	b, _ := os.ReadFile(s.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// graceWatch follows a ganesha log from where it ends now and notes, on
// arrival, when the NFSv4 grace period starts and ends and how many
// clients the recovery database held (ganesha logs these at EVENT level:
// "NFS Server Now IN GRACE", "check grace:reclaim complete(R) clid
// count(N)", "NFS Server Now NOT IN GRACE").
type graceWatch struct {
	mu        sync.Mutex
	start     time.Time
	end       time.Time
	clids     int
	reclaimed int
	stop      chan struct{}
	once      sync.Once
}

func watchGrace(path string) *graceWatch {
	g := &graceWatch{stop: make(chan struct{}), clids: -1}
	var off int64
	if fi, err := os.Stat(path); err == nil {
		off = fi.Size()
	}
	go func() {
		tick := time.NewTicker(20 * time.Millisecond) // the resolution of what it reports
		defer tick.Stop()
		var partial string
		for {
			select {
			case <-g.stop:
				return
			case <-tick.C:
			}
			f, err := os.Open(path)
			if err != nil {
				continue
			}
			buf := make([]byte, 1<<16)
			n, _ := f.ReadAt(buf, off)
			f.Close()
			off += int64(n)
			text := partial + string(buf[:n])
			lines := strings.Split(text, "\n")
			partial = lines[len(lines)-1]
			now := time.Now()
			g.mu.Lock()
			for _, l := range lines[:len(lines)-1] {
				switch {
				case strings.Contains(l, "NFS Server Now IN GRACE") && g.start.IsZero():
					g.start = now
				case strings.Contains(l, "NFS Server Now NOT IN GRACE") && g.end.IsZero():
					g.end = now
				case strings.Contains(l, "check grace:reclaim complete("):
					var r, c int
					if _, err := fmt.Sscanf(l[strings.Index(l, "check grace:"):], "check grace:reclaim complete(%d) clid count(%d)", &r, &c); err == nil {
						g.reclaimed, g.clids = r, c
					}
				}
			}
			g.mu.Unlock()
		}
	}()
	return g
}

// result is the grace period seen: its length (ended false while it
// lasts) and the recovery database's clients.
func (g *graceWatch) result() (length time.Duration, ended bool, clids, reclaimed int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.start.IsZero() || g.end.IsZero() {
		return 0, false, g.clids, g.reclaimed
	}
	return g.end.Sub(g.start), true, g.clids, g.reclaimed
}

// waitEnd waits for the end of the grace period.
func (g *graceWatch) waitEnd(timeout time.Duration) error {
	return poll.Wait(timeout, func() error {
		if _, ended, _, _ := g.result(); !ended {
			return errors.New("still in grace")
		}
		return nil
	})
}

func (g *graceWatch) close() { g.once.Do(func() { close(g.stop) }) }
