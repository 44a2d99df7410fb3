//go:build integration

package nfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
)

// These tests run the real ganesha.nfsd and prove the data path with the
// libnfs client.

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newDir makes a directory to export under the environment's data dir.
func newDir(t testing.TB, env *testenv.GaneshaEnv, name string) string {
	t.Helper()
	p := filepath.Join(env.Dir, "data", name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// noConfigErrors fails if ganesha reported errors in our generated config:
// an unknown or misspelled option is logged and otherwise ignored.
func noConfigErrors(t *testing.T, env *testenv.GaneshaEnv) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env.Config().RunDir, "ganesha.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "config_errs_to_log") || strings.Contains(line, "Unknown parameter") ||
			strings.Contains(line, "Unknown block") {
			t.Errorf("ganesha config error: %s", line)
		}
	}
}

func TestGaneshaDataPath(t *testing.T) {
	// An IPv6 network too, to prove ganesha parses the client list.
	env := testenv.StartGanesha(t, nil, func(c *nfs.GaneshaConfig) {
		c.Clients = append(c.Clients, "fd00::/8")
	})
	ctx := ctxFor(t, time.Minute)
	dir := newDir(t, env, "vol1")
	e := nfs.Export{ID: 11, Path: dir, Pseudo: "/dots/vol1", Clients: testenv.LoopbackClients}
	if err := env.Export(ctx, e); err != nil {
		t.Fatal(err)
	}
	// Usable as soon as Export returns: no retries.
	data := bytes.Repeat([]byte("dots\x00\xff"), 50000)
	if err := env.Client.WriteFile(ctx, e.Pseudo, "a/../f.bin", data); !errors.Is(err, libnfs.ErrInvalid) {
		t.Errorf("path with .. = %v, want ErrInvalid", err)
	}
	if err := env.Client.WriteFile(ctx, e.Pseudo, "f.bin", data); err != nil {
		t.Fatal(err)
	}
	got, err := env.Client.ReadFile(ctx, e.Pseudo, "f.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (err %v), want %d", len(got), err, len(data))
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, "f.bin"))
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("file on disk differs (err %v)", err)
	}
	names, err := env.Client.List(ctx, e.Pseudo, "")
	if err != nil || !slices.Equal(names, []string{"f.bin"}) {
		t.Fatalf("List = %v, %v", names, err)
	}
	// NFSv4.0 reads the same export through the pseudo filesystem.
	v4 := env.Client
	v4.Version = 4
	got, err = v4.ReadFile(ctx, e.Pseudo, "f.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("v4 read: %d bytes, %v", len(got), err)
	}
	// Creating over v4 works on an ordinary file system (not on zfs-fuse).
	if err := v4.WriteFile(ctx, e.Pseudo, "v4.txt", []byte("four")); err != nil {
		t.Fatalf("v4 write: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "v4.txt")); string(got) != "four" {
		t.Errorf("v4 write left %q", got)
	}
	// Owners are numeric: root's file is 0, not 65534.
	fi, err := os.Stat(filepath.Join(dir, "f.bin"))
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("owner of a file written as root: %+v %v", fi.Sys(), err)
	}
	if err := env.Healthy(); err != nil {
		t.Errorf("Healthy: %v", err)
	}
	noConfigErrors(t, env)
}

func TestGaneshaUnexport(t *testing.T) {
	env := testenv.StartGanesha(t, nil)
	ctx := ctxFor(t, time.Minute)
	dir := newDir(t, env, "gone")
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := nfs.Export{ID: 3, Path: dir, Pseudo: "/dots/gone", Clients: testenv.LoopbackClients}
	if err := env.Export(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.ReadFile(ctx, e.Pseudo, "x"); err != nil {
		t.Fatal(err)
	}
	if err := env.Unexport(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if err := env.Unexport(ctx, e.ID); err != nil {
		t.Errorf("second Unexport: %v", err)
	}
	_, err := env.Client.ReadFile(ctx, e.Pseudo, "x")
	if err == nil || !(errors.Is(err, libnfs.ErrAccess) || errors.Is(err, libnfs.ErrNotFound)) {
		t.Errorf("v3 read after Unexport = %v, want access denied or not found", err)
	}
	v4 := env.Client
	v4.Version = 4
	if _, err := v4.ReadFile(ctx, e.Pseudo, "x"); !errors.Is(err, libnfs.ErrNotFound) {
		t.Errorf("v4 read after Unexport = %v, want not found", err)
	}
	if len(env.Exports()) != 0 {
		t.Errorf("Exports() = %v", env.Exports())
	}
}

func TestGaneshaReadOnly(t *testing.T) {
	env := testenv.StartGanesha(t, nil)
	ctx := ctxFor(t, time.Minute)
	dir := newDir(t, env, "ro")
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := nfs.Export{ID: 4, Path: dir, Pseudo: "/dots/ro", ReadOnly: true, Clients: testenv.LoopbackClients}
	if err := env.Export(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got, err := env.Client.ReadFile(ctx, e.Pseudo, "keep"); err != nil || string(got) != "kept" {
		t.Fatalf("read from read-only export: %q %v", got, err)
	}
	err := env.Client.WriteFile(ctx, e.Pseudo, "new", []byte("no"))
	if !errors.Is(err, libnfs.ErrReadOnly) {
		t.Fatalf("write to read-only export = %v, want ErrReadOnly", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("file created through a read-only export")
	}
	// Turning it read-write is an update of the same export.
	e.ReadOnly = false
	if err := env.Export(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.WriteFile(ctx, e.Pseudo, "new", []byte("yes")); err != nil {
		t.Errorf("write after switching to read-write: %v", err)
	}
}

func TestGaneshaConcurrentExports(t *testing.T) {
	const n = 40
	env := testenv.StartGanesha(t, nil)
	ctx := ctxFor(t, 2*time.Minute)
	var exports []nfs.Export
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("c%d", i)
		dir := newDir(t, env, name)
		if err := os.WriteFile(filepath.Join(dir, "id"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		exports = append(exports, nfs.Export{ID: uint32(100 + i), Path: dir, Pseudo: "/dots/" + name, Clients: testenv.LoopbackClients})
	}
	before := env.Stats().Reloads
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, e := range exports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = env.Export(ctx, e)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Export %d: %v", exports[i].ID, err)
		}
	}
	reloads := env.Stats().Reloads - before
	t.Logf("%d concurrent exports: %d reloads", n, reloads)
	if reloads > n/4 {
		t.Errorf("%d concurrent exports took %d reloads", n, reloads)
	}
	for _, e := range exports {
		got, err := env.Client.ReadFile(ctx, e.Pseudo, "id")
		if err != nil || "/dots/"+string(got) != e.Pseudo {
			t.Errorf("export %d: read %q, %v", e.ID, got, err)
		}
	}
}

func TestGaneshaExportReadyOnReturn(t *testing.T) {
	env := testenv.StartGanesha(t, nil)
	ctx := ctxFor(t, 2*time.Minute)
	// Each export is used once, right after Export returns. A single
	// failure means Export returned before ganesha finished its reload.
	for i := 1; i <= 15; i++ {
		dir := newDir(t, env, fmt.Sprintf("r%d", i))
		e := nfs.Export{ID: uint32(i), Path: dir, Pseudo: fmt.Sprintf("/dots/r%d", i), Clients: testenv.LoopbackClients}
		if err := env.Export(ctx, e); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Client.List(ctx, e.Pseudo, ""); err != nil {
			t.Fatalf("export %d not usable right after Export: %v", i, err)
		}
	}
}

func TestGaneshaRejectedExport(t *testing.T) {
	// Over DBus, ganesha refuses the AddExport of the bad one; the SIGHUP
	// that takes over finds which export it was.
	for _, mode := range []string{nfs.DBusOff, nfs.DBusOn} {
		t.Run("dbus="+mode, func(t *testing.T) {
			env := testenv.StartGanesha(t, nil, func(c *nfs.GaneshaConfig) { c.DBus = mode })
			ctx := ctxFor(t, time.Minute)
			good := nfs.Export{ID: 1, Path: newDir(t, env, "good"), Pseudo: "/dots/good", Clients: testenv.LoopbackClients}
			bad := nfs.Export{ID: 2, Path: filepath.Join(env.Dir, "data", "missing"), Pseudo: "/dots/missing", Clients: testenv.LoopbackClients}
			err := env.SetExports(ctx, []nfs.Export{good, bad})
			if !errors.Is(err, nfs.ErrExportFailed) || !strings.Contains(err.Error(), "missing") {
				t.Fatalf("SetExports with a missing directory = %v, want ErrExportFailed naming it", err)
			}
			if got := env.Exports(); len(got) != 1 || !got[0].Equal(good) {
				t.Errorf("Exports() = %v, want only the good one", got)
			}
			if _, err := env.Client.List(ctx, good.Pseudo, ""); err != nil {
				t.Errorf("the good export is not served: %v", err)
			}
			// Export checks the directory itself.
			if err := env.Export(ctx, bad); !errors.Is(err, nfs.ErrNotFound) {
				t.Errorf("Export of a missing directory = %v, want ErrNotFound", err)
			}
			if mode == nfs.DBusOn {
				st := env.Stats()
				key := func(m, o string) int { return st.Changes[nfs.ChangeKey{Method: m, Outcome: o}] }
				if key(nfs.MethodDBus, nfs.OutcomeError) == 0 || key(nfs.MethodSIGHUP, nfs.OutcomeOK) == 0 {
					t.Errorf("changes %v: want a failed DBus call and a SIGHUP", st.Changes)
				}
			}
		})
	}
}

func TestGaneshaPathChange(t *testing.T) {
	env := testenv.StartGanesha(t, nil)
	ctx := ctxFor(t, time.Minute)
	a, b := newDir(t, env, "a"), newDir(t, env, "b")
	for dir, name := range map[string]string{a: "in-a", b: "in-b"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := nfs.Export{ID: 9, Path: a, Pseudo: "/dots/vol", Clients: testenv.LoopbackClients}
	if err := env.Export(ctx, e); err != nil {
		t.Fatal(err)
	}
	e.Path = b
	if err := env.Export(ctx, e); err != nil {
		t.Fatal(err)
	}
	names, err := env.Client.List(ctx, e.Pseudo, "")
	if err != nil || !slices.Equal(names, []string{"in-b"}) {
		t.Errorf("after moving the export to another path, List = %v, %v", names, err)
	}
	noConfigErrors(t, env)
}

func TestGaneshaRestartAfterKill(t *testing.T) {
	env := testenv.StartGanesha(t, nil)
	ctx := ctxFor(t, 2*time.Minute)
	e := nfs.Export{ID: 21, Path: newDir(t, env, "survivor"), Pseudo: "/dots/survivor", Clients: testenv.LoopbackClients}
	if err := env.Export(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.WriteFile(ctx, e.Pseudo, "f", []byte("before")); err != nil {
		t.Fatal(err)
	}
	old := env.Pid()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "ganesha restarted", func() error {
		if pid := env.Pid(); pid == old || pid == 0 {
			return fmt.Errorf("pid %d", pid)
		}
		return env.Healthy()
	})
	if env.Stats().Restarts != 1 {
		t.Errorf("Stats = %+v", env.Stats())
	}
	if err := syscall.Kill(old, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("killed ganesha %d still exists: %v", old, err)
	}
	got, err := env.Client.ReadFile(ctx, e.Pseudo, "f")
	if err != nil || string(got) != "before" {
		t.Fatalf("read after restart: %q %v", got, err)
	}
	// Writes wait for the end of the grace period (2 s here).
	_ = poll.Wait(30*time.Second, func() error {
		err = env.Client.WriteFile(ctx, e.Pseudo, "g", []byte("after"))
		if errors.Is(err, libnfs.ErrGrace) {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("write after restart: %v", err)
	}
	// And new exports still work.
	e2 := nfs.Export{ID: 22, Path: newDir(t, env, "newcomer"), Pseudo: "/dots/newcomer", Clients: testenv.LoopbackClients}
	if err := env.Export(ctx, e2); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.List(ctx, e2.Pseudo, ""); err != nil {
		t.Errorf("export added after the restart: %v", err)
	}
}

func TestGaneshaStopLeavesNothing(t *testing.T) {
	env := testenv.StartGanesha(t, nil)
	ctx := ctxFor(t, time.Minute)
	pid := env.Pid()
	if pid == 0 {
		t.Fatal("no pid")
	}
	if err := env.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("ganesha %d still exists after Stop: %v", pid, err)
	}
	conf := filepath.Join(env.Config().RunDir, "ganesha.conf")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		if raw, err := os.ReadFile(f); err == nil && strings.Contains(string(raw), conf) {
			t.Errorf("process %s still runs our config", f)
		}
	}
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(env.Config().NFSPort))
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("NFS port %s still accepts connections", addr)
	}
	if err := env.Healthy(); !errors.Is(err, nfs.ErrUnavailable) {
		t.Errorf("Healthy after Stop = %v", err)
	}
}
