package mounter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"

	"github.com/dots-csi/dots/internal/mountfake"
	mount "k8s.io/mount-utils"
)

// Candidates: a volume that may be on any of several servers (replicas)
// is mounted from the first that serves it.

var (
	candA = Volume{ID: "a/pvc-1", Server: "a", Address: "10.96.0.11", Port: 20490, Export: "/dots/pvc-1"}
	candB = Volume{ID: "a/pvc-1", Server: "b", Address: "10.96.0.12", Port: 20491, Export: "/dots/pvc-1"}
	candC = Volume{ID: "a/pvc-1", Server: "c", Address: "10.96.0.13", Export: "/dots/pvc-1"}
)

// candidateHost is an nfs-mode host whose NFS mounts go through the fake's
// MountNFS, with a short try timeout.
func candidateHost(t *testing.T) (*mountfake.Seams, *Host) {
	t.Helper()
	s := mountfake.New()
	cfg := seamsConfig(s, ModeNFS, "")
	cfg.NFSMount = s.MountNFS
	cfg.MountTryTimeout = 50 * time.Millisecond
	h, err := New(cfg)
	must(t, err)
	return s, h
}

func sources(tries []mountfake.MountTry) []string {
	var out []string
	for _, tr := range tries {
		out = append(out, tr.Source)
	}
	return out
}

func TestStageFromFirstServes(t *testing.T) {
	s, h := candidateHost(t)
	staging := filepath.Join(t.TempDir(), "st")
	used, err := h.StageFrom(context.Background(), []Volume{candA, candB}, staging, nil, false)
	must(t, err)
	if used.Server != "a" {
		t.Fatalf("used %v, want the first candidate", used)
	}
	if got := sources(s.MountTries()); !slices.Equal(got, []string{"10.96.0.11:/dots/pvc-1"}) {
		t.Fatalf("tries %q, want only the first", got)
	}
	if mps := s.MountsAt(staging); len(mps) != 1 || mps[0].Device != "10.96.0.11:/dots/pvc-1" {
		t.Fatalf("staging shows %+v", mps)
	}
	// Several candidates: mount(8) must not retry a refused server for minutes.
	if opts := s.MountTries()[0].Options; !slices.Contains(opts, "retry=0") || !slices.Contains(opts, "port=20490") {
		t.Fatalf("options %q lack retry=0 or the candidate's port", opts)
	}
}

func TestStageFromSecondAfterFailure(t *testing.T) {
	s, h := candidateHost(t)
	s.SetMountErr("10.96.0.11:/dots/pvc-1", errors.New("mount.nfs: access denied by server while mounting"))
	staging := filepath.Join(t.TempDir(), "st")
	used, err := h.StageFrom(context.Background(), []Volume{candA, candB}, staging, nil, false)
	must(t, err)
	if used.Server != "b" {
		t.Fatalf("used %v, want b", used)
	}
	if got := sources(s.MountTries()); !slices.Equal(got, []string{"10.96.0.11:/dots/pvc-1", "10.96.0.12:/dots/pvc-1"}) {
		t.Fatalf("tries %q, want a then b", got)
	}
	if mps := s.MountsAt(staging); len(mps) != 1 || mps[0].Device != "10.96.0.12:/dots/pvc-1" || !slices.Contains(mps[0].Opts, "port=20491") {
		t.Fatalf("staging shows %+v, want b's export on b's port", mps)
	}

	// Staged again (kubelet retries): the mount of b is kept, nothing tried.
	used, err = h.StageFrom(context.Background(), []Volume{candA, candB}, staging, nil, false)
	must(t, err)
	if used.Server != "b" || len(s.MountTries()) != 2 || len(s.MountsAt(staging)) != 1 {
		t.Fatalf("restage: used %v, %d tries, mounts %+v", used, len(s.MountTries()), s.MountsAt(staging))
	}
	// Read-only asked of a read-write mount of a listed server: a conflict.
	if _, err := h.StageFrom(context.Background(), []Volume{candA, candB}, staging, nil, true); !errors.Is(err, ErrMountConflict) {
		t.Fatalf("ro restage of an rw mount: %v", err)
	}
	// Another volume's mount there is a conflict naming what was expected.
	other := []Volume{{ID: "x", Server: "a", Address: "10.96.0.11", Export: "/dots/other"}, {ID: "x", Server: "b", Address: "10.96.0.12", Export: "/dots/other"}}
	_, err = h.StageFrom(context.Background(), other, staging, nil, false)
	if !errors.Is(err, ErrMountConflict) || !strings.Contains(err.Error(), "10.96.0.11:/dots/other or 10.96.0.12:/dots/other") {
		t.Fatalf("another volume's candidates: %v", err)
	}
}

func TestStageFromDeadServerIsBounded(t *testing.T) {
	s, h := candidateHost(t)
	s.HangMount("10.96.0.11:/dots/pvc-1") // a blackholed address: the mount never answers
	staging := filepath.Join(t.TempDir(), "st")
	used, err := h.StageFrom(context.Background(), []Volume{candA, candB}, staging, nil, false)
	must(t, err)
	if used.Server != "b" {
		t.Fatalf("used %v, want b after a's try timed out", used)
	}
	if mps := s.MountsAt(staging); len(mps) != 1 || mps[0].Device != "10.96.0.12:/dots/pvc-1" {
		t.Fatalf("staging shows %+v", mps)
	}
}

func TestStageFromNoneServes(t *testing.T) {
	s, h := candidateHost(t)
	s.SetMountErr("10.96.0.11:/dots/pvc-1", errors.New("Connection refused"))
	s.HangMount("10.96.0.12:/dots/pvc-1")
	s.SetMountErr("10.96.0.13:/dots/pvc-1", errors.New("No such file or directory"))
	staging := filepath.Join(t.TempDir(), "st")
	_, err := h.StageFrom(context.Background(), []Volume{candA, candB, candC}, staging, nil, false)
	if !errors.Is(err, ErrNoServer) {
		t.Fatalf("err %v, want ErrNoServer", err)
	}
	for _, want := range []string{"a (10.96.0.11:20490): Connection refused", "b (10.96.0.12:20491): " + ErrTimeout.Error(), "c (10.96.0.13): No such file or directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if len(s.MountsAt(staging)) != 0 {
		t.Fatalf("something is mounted: %+v", s.MountsAt(staging))
	}
	// A malformed address fails its own try only.
	bad := candA
	bad.Address = "not an address"
	_, err = h.StageFrom(context.Background(), []Volume{bad, candB}, staging, nil, false)
	if !errors.Is(err, ErrNoServer) || !strings.Contains(err.Error(), ErrInvalidVolume.Error()) {
		t.Fatalf("bad address then a dead server: %v", err)
	}
}

func TestStageFromOptions(t *testing.T) {
	s, h := candidateHost(t)
	staging := filepath.Join(t.TempDir(), "st")
	// A bad option is the request's fault: refused before any server is tried.
	if _, err := h.StageFrom(context.Background(), []Volume{candA, candB}, staging, []string{"nolock"}, false); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("nolock: %v", err)
	}
	if n := len(s.MountTries()); n != 0 {
		t.Fatalf("%d tries with a bad option", n)
	}
	// The user's retry stays.
	_, err := h.StageFrom(context.Background(), []Volume{candA, candB}, staging, []string{"retry=1"}, false)
	must(t, err)
	if opts := s.MountTries()[0].Options; !slices.Contains(opts, "retry=1") || slices.Contains(opts, "retry=0") {
		t.Fatalf("options %q, want the user's retry=1 only", opts)
	}
}

func TestStageFromOneServerAsBefore(t *testing.T) {
	s, h := candidateHost(t)
	s.HangMount("10.96.0.11:/dots/pvc-1")
	staging := filepath.Join(t.TempDir(), "st")
	// One server: no per-try bound (the caller's context is the bound, so
	// the hang outlives the 50ms try timeout), no retry=0, its own error.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := h.StageFrom(ctx, []Volume{candA}, staging, nil, false)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrNoServer) {
		t.Fatalf("one hanging server: %v, want the caller's deadline", err)
	}
	if opts := s.MountTries()[0].Options; slices.Contains(opts, "retry=0") {
		t.Fatalf("options %q: retry=0 with one server", opts)
	}
	if _, err := h.StageFrom(context.Background(), []Volume{{ID: "v", Address: "bad address", Export: "/dots/v"}}, staging, nil, false); !errors.Is(err, ErrInvalidVolume) || errors.Is(err, ErrNoServer) {
		t.Fatalf("one bad server: %v, want its ErrInvalidVolume", err)
	}
}

// Local-bind: a candidate serves the volume when its path is a mounted
// dataset directly below its volumes directory.
func TestStageFromLocalBind(t *testing.T) {
	rootA, rootB := VolumesDir(t.TempDir()), VolumesDir(t.TempDir())
	s := mountfake.New()
	srcB := filepath.Join(rootB, "pvc-1")
	must(t, os.MkdirAll(srcB, 0o750))
	// Server c has the directory but no dataset mounted there (a leftover
	// mountpoint directory, or a dataset not mounted).
	srcC := filepath.Join(rootA, "pvc-2")
	must(t, os.MkdirAll(srcC, 0o750))
	s.Mounter.MountPoints = []mount.MountPoint{{Device: "poolb/dots/volumes/pvc-1", Path: srcB, Type: "fuse.zfs"}}
	cfg := seamsConfig(s, ModeLocalBind, "")
	cfg.LocalBindRoots = []string{rootA, rootB}
	h, err := New(cfg)
	must(t, err)

	a := Volume{ID: "a/pvc-1", Server: "a", LocalPath: filepath.Join(rootA, "pvc-1")} // a replica: nothing in a's volumes directory
	b := Volume{ID: "a/pvc-1", Server: "b", LocalPath: srcB}
	staging := filepath.Join(t.TempDir(), "st")
	used, err := h.StageFrom(context.Background(), []Volume{a, b}, staging, nil, false)
	must(t, err)
	if used.Server != "b" {
		t.Fatalf("used %v, want b", used)
	}
	if mps := s.MountsAt(staging); len(mps) != 1 || mps[0].Device != "poolb/dots/volumes/pvc-1" {
		t.Fatalf("staging shows %+v", mps)
	}
	used, err = h.StageFrom(context.Background(), []Volume{a, b}, staging, nil, false)
	if err != nil || used.Server != "b" || len(s.MountsAt(staging)) != 1 {
		t.Fatalf("restage: %v, %v, %+v", used, err, s.MountsAt(staging))
	}

	c := Volume{ID: "a/pvc-2", Server: "c", LocalPath: srcC}
	a2 := Volume{ID: "a/pvc-2", Server: "a", LocalPath: filepath.Join(rootA, "missing")}
	_, err = h.StageFrom(context.Background(), []Volume{a2, c}, filepath.Join(t.TempDir(), "st2"), nil, false)
	if !errors.Is(err, ErrNoServer) {
		t.Fatalf("err %v, want ErrNoServer", err)
	}
	for _, want := range []string{fmt.Sprintf("a (%s): %s", a2.LocalPath, ErrNotFound), fmt.Sprintf("c (%s): %s", srcC, ErrNotMountPoint)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// RunMountCommand ends the whole process group at the deadline: mount(8)
// forks mount.nfs, which would otherwise go on and mount later.
func TestRunMountCommandKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	script := fmt.Sprintf("sleep 600 & echo $! > %s; wait", pidFile)
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err := RunMountCommand(ctx, "sh", "-c", script)
	hung := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the deadline", err)
	}
	b, err := os.ReadFile(pidFile)
	must(t, err)
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		t.Fatal(err)
	}
	// The child was sent SIGKILL with its group: it ends (gone, or a
	// zombie left to init) once the kernel delivers it, which on a busy
	// machine may be a moment after RunMountCommand returned.
	poll.Until(t, 10*time.Second, "the mount command's child killed with its group", func() error {
		if err := syscall.Kill(pid, 0); err != nil {
			return nil
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if f := strings.Fields(string(st)); len(f) < 3 || f[2] != "Z" {
			return fmt.Errorf("child %d still running: %s", pid, st)
		}
		return nil
	})

	if err := RunMountCommand(context.Background(), "sh", "-c", "echo 'mount.nfs: access denied' >&2; exit 32"); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("failing command: %v, want its output", err)
	}
	start = time.Now()
	must(t, RunMountCommand(context.Background(), "true"))
	spawn := time.Since(start)
	// What a try of a server that never answers costs: the deadline, plus
	// killing the group; a command that exits at once is the baseline.
	fmt.Printf("mount-try-dead: deadline_ms=%d ended_ms=%.1f over_deadline_ratio=%.2f spawn_baseline_ms=%.1f\n",
		deadline.Milliseconds(), float64(hung.Microseconds())/1000, hung.Seconds()/deadline.Seconds(), float64(spawn.Microseconds())/1000)
}
