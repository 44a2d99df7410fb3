//go:build integration

package faults

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/driver"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// procServer is a storage server run as its own process (the real binary),
// so a test can kill it, stop it and start it again on the same pool.
type procServer struct {
	t    *testing.T
	name string
	pool testenv.TestPool
	api  string
	http string
	nfs  int
	args []string
	mu   sync.Mutex
	proc *testenv.ServerProcess // nil while none runs
}

// startProcServer makes a test pool and runs `dots server` on it (NFSv4 on
// a free port, open to 127.0.0.0/8), with extra flags.
func startProcServer(t *testing.T, prefix, name string, extra ...string) *procServer {
	t.Helper()
	tp := testenv.NewTestPool(t, prefix)
	ports := testenv.FreeTCPPorts(t, 3)
	s := &procServer{t: t, name: name, pool: tp, api: "127.0.0.1:" + strconv.Itoa(ports[0]),
		http: "127.0.0.1:" + strconv.Itoa(ports[1]), nfs: ports[2]}
	s.args = append([]string{"server", "--name", name, "--endpoint", "tcp://" + s.api, "--http-address", s.http,
		"--run-dir", tp.Dir + "/run", "--pool", tp.Name, "--vdev", tp.Vdev, "--create-pool", "--pool-file-size", "1Gi",
		"--mount-root", tp.Mountpoint, "--nfs-port", strconv.Itoa(s.nfs), "--nfs-bind-address", "127.0.0.1",
		"--nfs-clients", "127.0.0.0/8", "--export-access", "clients", "--default-volume-size", "16Mi", "--reconcile-interval", "2s"}, extra...)
	s.args = append(s.args, testenv.ServerTLSFlags(t)...)
	t.Cleanup(func() {
		s.signal(syscall.SIGTERM)
		s.wait()
		if t.Failed() {
			s.keepLog(t)
		}
	})
	s.start()
	return s
}

func (s *procServer) logPath() string { return filepath.Join(s.pool.Dir, "server.log") }

// keepLog shows the end of a failed test's server log.
func (s *procServer) keepLog(t *testing.T) {
	testenv.KeepLog(t, "dots-faults", s.name, s.logPath(), 30)
}

// start runs the server and returns once it serves.
func (s *procServer) start() {
	s.t.Helper()
	proc := testenv.StartServerProcess(s.t, s.name, s.args, s.logPath(), func() { s.keepLog(s.t) })
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()
}

// signal sends sig to the running server, if any.
func (s *procServer) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.Signal(sig)
	}
}

// wait waits for the server process to exit.
func (s *procServer) wait() {
	s.mu.Lock()
	proc := s.proc
	s.proc = nil
	s.mu.Unlock()
	if proc != nil {
		<-proc.Exited()
	}
}

// kill SIGKILLs the server and waits for it: nothing of it can clean up.
func (s *procServer) kill() {
	s.signal(syscall.SIGKILL)
	s.wait()
}

func (s *procServer) discovery() discovery.Server {
	return discovery.Server{Name: s.name, APIAddress: s.api, NFSAddress: "127.0.0.1", NFSPort: s.nfs, LocalPaths: true}
}

// pid is the server's process, 0 when none runs.
func (s *procServer) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return s.proc.Pid()
	}
	return 0
}

// strayCommands lists the live zfs and zpool processes working on the
// server's pool that are not children of its current process.
func (s *procServer) strayCommands() []process {
	cur := s.pid()
	var out []process
	for _, p := range processes(s.pool.Name) {
		base := filepath.Base(p.argv[0])
		if (base == "zfs" || base == "zpool") && p.ppid != cur {
			out = append(out, p)
		}
	}
	return out
}

// cluster is a controller, in this process, over servers in their own
// processes; its placements are files in a temporary directory.
type cluster struct {
	t       *testing.T
	servers map[string]*procServer
	ctrl    *driver.ControllerServer
	reg     *registry.Registry
	store   placements.Store
}

func newCluster(t *testing.T, servers ...*procServer) *cluster {
	t.Helper()
	var list discovery.Static
	byName := map[string]*procServer{}
	for _, s := range servers {
		list = append(list, s.discovery())
		byName[s.name] = s
	}
	reg := registry.New(list, testenv.ClientCreds(t), registry.Options{Interval: time.Second, ProbeTimeout: time.Second}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	reg.Refresh(ctx)
	go reg.Run(ctx)
	t.Cleanup(cancel)
	store, err := placements.NewDir(filepath.Join(t.TempDir(), "placements"))
	if err != nil {
		t.Fatal(err)
	}
	// Calls time out fast: a hung server must not hold the tests for the
	// production minutes.
	ctrl, err := driver.NewControllerServer(reg, store, driver.ControllerOptions{DefaultCapacity: 16 << 20,
		CallTimeout: 5 * time.Second, ReadTimeout: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, servers: byName, ctrl: ctrl, reg: reg, store: store}
}

// code is the gRPC code a client of the controller would see.
func code(err error) codes.Code { return status.Code(driver.ControllerCodes.Status(err)) }

// attempts counts the calls retry sent, for the scenarios' summary lines
// (the tests of this package run one at a time).
var attempts atomic.Int64

// retry calls op until it succeeds, as the CSI sidecars do: every error is
// retried with a growing delay, within two minutes.
func retry(t *testing.T, what string, op func() error) {
	t.Helper()
	delay := 50 * time.Millisecond
	deadline := time.Now().Add(2 * time.Minute)
	for {
		attempts.Add(1)
		err := op()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: still failing after two minutes: %v (%v)", what, err, code(err))
			return
		}
		time.Sleep(delay)
		delay = min(2*delay, time.Second)
	}
}

func (s *procServer) exportedPseudos(t *testing.T) map[string]bool {
	t.Helper()
	return testenv.ExportedPseudos(t, filepath.Join(s.pool.Dir, "run"))
}

// datasets lists a server's live volume datasets (not trashed) and its
// user snapshots, and counts the internal snapshots not marked for
// deferred destruction, from zfs itself.
func (s *procServer) datasets(t *testing.T) (vols, snaps map[string]bool, trash []string, undeferred int) {
	t.Helper()
	out := testenv.Zfs(t, "get", "-Hp", "-r", "-o", "name,property,value,source", "dots:trashed,defer_destroy", s.pool.Name+"/dots")
	vols, snaps = map[string]bool{}, map[string]bool{}
	volumes, trashDS := s.pool.Name+"/dots/volumes/", s.pool.Name+"/dots/trash/"
	trashed := map[string]bool{}
	seen := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(l, "\t")
		if len(f) < 4 {
			continue
		}
		name, prop, val, src := f[0], f[1], f[2], f[3]
		seen[name] = true
		if prop == "dots:trashed" && src == "local" && val != "-" {
			trashed[name] = true
		}
		if prop == "defer_destroy" && strings.Contains(name, "@_") && val != "on" {
			undeferred++
		}
	}
	for name := range seen {
		ds, snap, isSnap := strings.Cut(name, "@")
		switch {
		case isSnap && !strings.HasPrefix(snap, "_"):
			snaps[snap] = true
		case isSnap:
		case strings.HasPrefix(name, trashDS):
			trash = append(trash, name)
		case strings.HasPrefix(name, volumes) && !strings.Contains(strings.TrimPrefix(name, volumes), "/"):
			if trashed[ds] {
				trash = append(trash, name)
			} else {
				vols[strings.TrimPrefix(name, volumes)] = true
			}
		}
	}
	return vols, snaps, trash, undeferred
}

var errNotYet = errors.New("not yet")

// waitEmpty waits until a server's pool holds no volume, snapshot or trash
// (deletes leave reaping to the server's maintenance).
func (s *procServer) waitEmpty(t *testing.T) {
	t.Helper()
	poll.Until(t, time.Minute, "server "+s.name+" empty", func() error {
		vols, snaps, trash, _ := s.datasets(t)
		if len(vols)+len(snaps)+len(trash) > 0 {
			return fmt.Errorf("%w: volumes %v, snapshots %v, trash %v", errNotYet, vols, snaps, trash)
		}
		return nil
	})
}
