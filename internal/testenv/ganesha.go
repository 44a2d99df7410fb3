package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/pkg/nfs"
)

// GaneshaDirPrefix starts the name of every run directory StartGanesha
// makes in os.TempDir(), followed by the test process's pid. It is how a
// later run recognises what a crashed run left behind.
const GaneshaDirPrefix = "dots-ganesha-"

// GaneshaEnv is a running ganesha for a test.
type GaneshaEnv struct {
	*nfs.Ganesha
	// Client reaches the server over NFSv3 (creating files over NFSv4 on
	// zfs-fuse fails; see ENVIRONMENT.md). Set Version to 4 for v4.
	Client libnfs.Client
	// Dir is the run directory; Dir/data is free for test exports.
	Dir string
}

// LoopbackClients is the client network of test NFS servers: exports of
// tests that read and write through them admit it.
var LoopbackClients = []string{"127.0.0.0/8"}

// StartGanesha starts a real NFS-Ganesha through pkg/nfs on free loopback
// ports, serving NFSv3 and NFSv4 (minor versions 0, 1, 2) to 127.0.0.0/8
// without root squashing, with the given exports. It is stopped in
// t.Cleanup. mutate, if given, may adjust the configuration first.
func StartGanesha(t testing.TB, exports []nfs.Export, mutate ...func(*nfs.GaneshaConfig)) *GaneshaEnv {
	t.Helper()
	for _, bin := range []string{"ganesha.nfsd", "nfs-cp", "nfs-cat", "nfs-ls", "rpcbind"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not installed: %v", bin, err)
		}
	}
	EnsureRpcbind(t)
	CleanStaleGanesha(t)

	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", GaneshaDirPrefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ganesha log kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	ports := FreeTCPPorts(t, 2)
	cfg := nfs.GaneshaConfig{
		RunDir:        filepath.Join(dir, "run"),
		RecoveryDir:   filepath.Join(dir, "recovery"),
		NFSPort:       ports[0],
		MountPort:     ports[1],
		BindAddr:      "127.0.0.1",
		Protocols:     []int{3, 4},
		MinorVersions: []int{0, 1, 2},
		Clients:       LoopbackClients,
		Squash:        nfs.SquashNone,
		// libnfs never reclaims, so after a restart the server waits out
		// the whole grace period before allowing writes: keep it short.
		GracePeriod:   2 * time.Second,
		LeaseLifetime: 2 * time.Second,
		RestartDelay:  50 * time.Millisecond,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	g, err := nfs.NewGanesha(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A minute, or longer when the test gave ganesha longer to start
	// (thousands of exports take minutes).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute+cfg.StartTimeout)
	defer cancel()
	if err := g.SetExports(ctx, exports); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatalf("starting ganesha: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := g.Stop(ctx); err != nil {
			t.Errorf("stopping ganesha: %v", err)
		}
	})
	return &GaneshaEnv{
		Ganesha: g,
		Client:  libnfs.Client{Host: "127.0.0.1", Port: cfg.NFSPort, MountPort: cfg.MountPort, Version: 3},
		Dir:     dir,
	}
}

// FreeTCPPorts returns n distinct free TCP ports on 127.0.0.1. They are free
// when returned; another process could take one before it is used, which
// shows up as a start failure, not as a wrong server.
func FreeTCPPorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// EnsureRpcbind starts rpcbind if none runs. NFSv3 registers with it at
// start-up. It is machine-wide, shared with other tests, and left running.
func EnsureRpcbind(t testing.TB) {
	t.Helper()
	if err := exec.Command("pgrep", "-x", "rpcbind").Run(); err == nil {
		return
	}
	cmd := exec.Command("rpcbind", "-w", "-f")
	// Its own session, so it outlives this test process and its group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting rpcbind: %v", err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it exits while we run
	if err := poll.Wait(10*time.Second, func() error {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:111", time.Second)
		if err == nil {
			_ = conn.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("rpcbind did not come up: %v", err)
	}
}

// CleanStaleGanesha kills ganesha processes started by StartGanesha in a
// test process that no longer exists, and removes their run directories.
// A ganesha counts as ours only if its -f config is inside a directory
// named GaneshaDirPrefix+PID-... in os.TempDir(); live owners are left
// alone.
func CleanStaleGanesha(t testing.TB) {
	t.Helper()
	tmp := os.TempDir()
	for _, p := range GaneshaProcesses() {
		conf := ganeshaArg(p.Args, "-f")
		owner, dir, ok := ganeshaOwner(tmp, conf)
		if !ok || PidAlive(owner) {
			continue
		}
		t.Logf("killing stale ganesha %d of dead test process %d (%s)", p.PID, owner, dir)
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	dirs, _ := filepath.Glob(filepath.Join(tmp, GaneshaDirPrefix+"*"))
	for _, d := range dirs {
		if owner, ok := ganeshaDirOwner(filepath.Base(d)); ok && !PidAlive(owner) {
			_ = os.RemoveAll(d)
		}
	}
}

// GaneshaProcess is a running ganesha.nfsd and its command line.
type GaneshaProcess struct {
	PID  int
	Args []string
}

// GaneshaProcesses lists the ganesha.nfsd processes on this machine.
func GaneshaProcesses() []GaneshaProcess {
	var out []GaneshaProcess
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "ganesha.nfsd" {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			out = append(out, GaneshaProcess{PID: pid, Args: args})
		}
	}
	return out
}

func ganeshaArg(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// ganeshaOwner finds the test pid in a config path TMP/dots-ganesha-PID-X/...
func ganeshaOwner(tmp, conf string) (int, string, bool) {
	rel, err := filepath.Rel(tmp, conf)
	if err != nil || strings.HasPrefix(rel, "..") {
		return 0, "", false
	}
	top := strings.Split(rel, string(filepath.Separator))[0]
	pid, ok := ganeshaDirOwner(top)
	return pid, filepath.Join(tmp, top), ok
}

func ganeshaDirOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, GaneshaDirPrefix)
	if !ok {
		return 0, false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidText)
	return pid, err == nil && pid > 0
}

// PidAlive reports whether a process with this pid exists (zombies count
// as gone: they hold no ports).
func PidAlive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Format: pid (comm) state ...; comm may contain spaces or ')'.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// ExportedPseudos reads the pseudo paths a storage server's NFS server
// exports, from the exports file the server keeps in its run directory
// (what ganesha was told to serve).
func ExportedPseudos(t testing.TB, runDir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, l := range strings.Split(ExportsText(t, runDir), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "Pseudo = "); ok {
			out[strings.Trim(strings.TrimSuffix(rest, ";"), `"`)] = true
		}
	}
	return out
}

// ExportsText is the exports file in a storage server's run directory
// (RUN-DIR/ganesha/exports.conf) with the files it includes in their
// place, as ganesha reads it: every EXPORT block the server asked for.
func ExportsText(t testing.TB, runDir string) string {
	t.Helper()
	text, err := nfs.ReadExports(filepath.Join(runDir, "ganesha"))
	if err != nil {
		t.Fatal(err)
	}
	return text
}
