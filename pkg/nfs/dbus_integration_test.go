//go:build integration

package nfs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
)

// These tests run ganesha with its private dbus-daemon and change exports
// through ganesha's DBus export manager.

// exportDirs makes one directory per name under the environment's data
// directory, each holding a file "id" with its name, and returns their
// paths. Plain directories, as in the other ganesha tests: the export
// manager treats them as it treats a dataset's mountpoint, and
// TestGaneshaZFSQuota covers exporting zfs-fuse datasets.
func exportDirs(t *testing.T, env *testenv.GaneshaEnv, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		p := newDir(t, env, n)
		if err := os.WriteFile(filepath.Join(p, "id"), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
		out[n] = p
	}
	return out
}

func withDBus(mode string) func(*nfs.GaneshaConfig) {
	return func(c *nfs.GaneshaConfig) {
		c.DBus = mode
		c.DBusTimeout = time.Second
	}
}

// readable reads file "id" through the export and compares it.
func readable(ctx context.Context, env *testenv.GaneshaEnv, pseudo, want string) error {
	got, err := env.Client.ReadFile(ctx, pseudo, "id")
	if err != nil {
		return err
	}
	if string(got) != want {
		return errors.New("read " + string(got) + ", want " + want)
	}
	return nil
}

func refused(err error) bool {
	return errors.Is(err, libnfs.ErrAccess) || errors.Is(err, libnfs.ErrNotFound)
}

func changes(env *testenv.GaneshaEnv, method, outcome string) int {
	return env.Stats().Changes[nfs.ChangeKey{Method: method, Outcome: outcome}]
}

// TestGaneshaDBusExports: adds, client list updates and removals go over
// DBus without a single SIGHUP, each live when its call returns; after a
// crash ganesha starts from the exports file with the same exports.
func TestGaneshaDBusExports(t *testing.T) {
	env := testenv.StartGanesha(t, nil, withDBus(nfs.DBusOn))
	ds := exportDirs(t, env, "vol1", "vol2")
	ctx := ctxFor(t, 2*time.Minute)
	if env.Status().BusPid == 0 {
		t.Fatal("no dbus-daemon running")
	}
	e1 := nfs.Export{ID: 21, Path: ds["vol1"], Pseudo: "/dots/vol1", Clients: testenv.LoopbackClients}
	e2 := nfs.Export{ID: 22, Path: ds["vol2"], Pseudo: "/dots/vol2", Clients: testenv.LoopbackClients}
	for _, e := range []nfs.Export{e1, e2} {
		if err := env.Export(ctx, e); err != nil {
			t.Fatal(err)
		}
		// Live when Export returns: no retries.
		if err := readable(ctx, env, e.Pseudo, filepath.Base(e.Path)); err != nil {
			t.Fatalf("export %d right after Export: %v", e.ID, err)
		}
	}

	// Per-node publishing changes the client list: another node only...
	other := e1
	other.Clients = []string{"127.0.0.2/32"}
	if err := env.Export(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := readable(ctx, env, e1.Pseudo, "vol1"); !refused(err) {
		t.Errorf("read from 127.0.0.1 with only 127.0.0.2 admitted = %v, want refused", err)
	}
	// ...then ours again.
	if err := env.Export(ctx, e1); err != nil {
		t.Fatal(err)
	}
	if err := readable(ctx, env, e1.Pseudo, "vol1"); err != nil {
		t.Errorf("read after admitting 127.0.0.1 again: %v", err)
	}

	if err := env.Unexport(ctx, e2.ID); err != nil {
		t.Fatal(err)
	}
	if err := readable(ctx, env, e2.Pseudo, "vol2"); !refused(err) {
		t.Errorf("read after Unexport = %v, want refused", err)
	}
	if err := readable(ctx, env, e1.Pseudo, "vol1"); err != nil {
		t.Errorf("the other export after Unexport: %v", err)
	}

	st := env.Stats()
	if st.Reloads != 0 {
		t.Errorf("%d SIGHUP reloads, want 0: every change should have gone over DBus (changes %v)", st.Reloads, st.Changes)
	}
	// 2 adds, 2 updates, 1 removal.
	if got := changes(env, nfs.MethodDBus, nfs.OutcomeOK); got != 5 {
		t.Errorf("DBus changes = %d, want 5 (%v)", got, st.Changes)
	}

	// The exports file is the truth at a start: a killed ganesha comes back
	// serving e1 only.
	old := env.Pid()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, time.Minute, "ganesha restarted", func() error {
		if p := env.Pid(); p == 0 || p == old || !env.Status().Up {
			return errors.New("not yet")
		}
		return nil
	})
	if err := readable(ctx, env, e1.Pseudo, "vol1"); err != nil {
		t.Errorf("export 21 after the restart: %v", err)
	}
	if err := readable(ctx, env, e2.Pseudo, "vol2"); !refused(err) {
		t.Errorf("removed export 22 after the restart = %v, want refused", err)
	}
	// And DBus still works with the new process.
	if err := env.Export(ctx, e2); err != nil {
		t.Fatal(err)
	}
	if err := readable(ctx, env, e2.Pseudo, "vol2"); err != nil {
		t.Errorf("export 22 added after the restart: %v", err)
	}
	if got := env.Stats().Reloads; got != 0 {
		t.Errorf("%d SIGHUP reloads after the restart, want 0", got)
	}
	for _, e := range []nfs.Export{e1, e2} {
		if err := env.Unexport(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGaneshaDBusFallback: when the bus does not answer, a change falls
// back to SIGHUP and still returns only once it is live; when the bus
// dies, ganesha (whose libdbus exits with its bus) is restarted with a new
// bus, and DBus serves changes again.
func TestGaneshaDBusFallback(t *testing.T) {
	env := testenv.StartGanesha(t, nil, withDBus(nfs.DBusAuto))
	ds := exportDirs(t, env, "a", "b", "c")
	ctx := ctxFor(t, 2*time.Minute)
	bus := env.Status().BusPid
	if bus == 0 {
		t.Fatal("no dbus-daemon running")
	}

	// A stopped bus: the call times out (DBusTimeout), SIGHUP takes over.
	if err := syscall.Kill(bus, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ea := nfs.Export{ID: 31, Path: ds["a"], Pseudo: "/dots/a", Clients: testenv.LoopbackClients}
	err := env.Export(ctx, ea)
	_ = syscall.Kill(bus, syscall.SIGCONT)
	if err != nil {
		t.Fatal(err)
	}
	if err := readable(ctx, env, ea.Pseudo, "a"); err != nil {
		t.Fatalf("export added by the SIGHUP fallback: %v", err)
	}
	if env.Stats().Reloads != 1 || changes(env, nfs.MethodDBus, nfs.OutcomeError) != 1 || changes(env, nfs.MethodSIGHUP, nfs.OutcomeOK) != 1 {
		t.Errorf("after a stopped bus: reloads %d, changes %v; want 1 reload, 1 DBus error, 1 SIGHUP change", env.Stats().Reloads, env.Stats().Changes)
	}

	// A dead bus takes ganesha with it; both come back.
	oldPid := env.Pid()
	if err := syscall.Kill(bus, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, time.Minute, "ganesha and its bus restarted", func() error {
		st := env.Status()
		if !st.Up || st.Pid == oldPid || st.BusPid == 0 || st.BusPid == bus {
			return errors.New("not yet")
		}
		return nil
	})
	if env.Stats().Restarts != 1 {
		t.Errorf("restarts = %d, want 1", env.Stats().Restarts)
	}
	reloads := env.Stats().Reloads
	eb := nfs.Export{ID: 32, Path: ds["b"], Pseudo: "/dots/b", Clients: testenv.LoopbackClients}
	if err := env.Export(ctx, eb); err != nil {
		t.Fatal(err)
	}
	for _, e := range []nfs.Export{ea, eb} {
		if err := readable(ctx, env, e.Pseudo, filepath.Base(e.Path)); err != nil {
			t.Errorf("export %d with the new bus: %v", e.ID, err)
		}
	}
	if got := env.Stats().Reloads; got != reloads {
		t.Errorf("the export with the new bus took %d SIGHUPs, want 0", got-reloads)
	}
	if got := changes(env, nfs.MethodDBus, nfs.OutcomeOK); got != 1 {
		t.Errorf("DBus changes = %d, want 1 (%v)", got, env.Stats().Changes)
	}

	// auto without a usable dbus-daemon binary: served, changes by SIGHUP.
	noBus := testenv.StartGanesha(t, nil, withDBus(nfs.DBusAuto), func(c *nfs.GaneshaConfig) {
		c.DBusDaemon = "/nonexistent/dbus-daemon"
	})
	ec := nfs.Export{ID: 33, Path: ds["c"], Pseudo: "/dots/c", Clients: testenv.LoopbackClients}
	if err := noBus.Export(ctx, ec); err != nil {
		t.Fatal(err)
	}
	if err := readable(ctx, noBus, ec.Pseudo, "c"); err != nil {
		t.Errorf("export without a bus: %v", err)
	}
	if noBus.Status().BusPid != 0 || changes(noBus, nfs.MethodDBus, nfs.OutcomeUnavailable) != 1 || changes(noBus, nfs.MethodSIGHUP, nfs.OutcomeOK) != 1 {
		t.Errorf("without a bus: status %+v", noBus.Status())
	}

	// on without one refuses to start.
	cfg := noBus.Config()
	cfg.DBus = nfs.DBusOn
	cfg.RunDir = filepath.Join(noBus.Dir, "run-on")
	cfg.NFSPort = testenv.FreeTCPPorts(t, 1)[0]
	cfg.MountPort = 0
	cfg.Protocols = []int{4}
	g, err := nfs.NewGanesha(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); !errors.Is(err, nfs.ErrUnavailable) || !strings.Contains(err.Error(), "DBus") {
		_ = g.Stop(ctx)
		t.Errorf("Start with DBus on and no bus = %v, want ErrUnavailable about DBus", err)
	}

	for _, e := range []nfs.Export{ea, eb} {
		if err := env.Unexport(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := noBus.Unexport(ctx, ec.ID); err != nil {
		t.Fatal(err)
	}
}
