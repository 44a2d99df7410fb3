package zfs

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

func TestMayMount(t *testing.T) {
	for _, tc := range []struct {
		cmd  command.Cmd
		want bool
	}{
		{command.Z("create", "-o", "refquota=1M", "p/dots/volumes/a"), true},
		{command.Z("clone", "p/v@s", "p/dots/volumes/b"), true},
		{command.Z("rename", "p/dots/volumes/a", "p/dots/trash/a"), true},
		{command.Z("mount", "p/dots/volumes/a"), true},
		{command.Z("rollback", "-r", "p/v@s"), true},
		{command.Z("promote", "p/dots/volumes/c"), true},
		{command.Z("set", "mountpoint=/m", "p"), true},
		{command.Z("set", "canmount=off", "p/dots/trash"), true},
		{command.Z("inherit", "mountpoint", "p/x"), true},
		{command.Pool("create", "-m", "/m", "p", "/f"), true},
		{command.Pool("import", "-d", "/d", "p"), true},
		{command.Z("set", "refquota=2M", "p/dots/volumes/a"), false},
		{command.Z("get", "-H", "mountpoint", "p"), false},
		{command.Z("list", "-H", "-o", "name"), false},
		{command.Z("snapshot", "p/v@s"), false},
		{command.Z("destroy", "p/v"), false},
		{command.Z("umount", "p/v"), false},
		{command.Z("recv", "-F", "p/dots/replicas/v"), false},
		{command.Z("send", "p/v@s"), false},
		{command.Pool("destroy", "p"), false},
		{command.Pool("list", "-H"), false},
	} {
		if got := mayMount(tc.cmd); got != tc.want {
			t.Errorf("mayMount(%s) = %v, want %v", tc.cmd, got, tc.want)
		}
	}
}

// gate is a runner whose commands wait on release, counting how many
// mounting commands run at once.
type gate struct {
	mounting, most atomic.Int32
	entered        chan string
	release        chan struct{}
}

func (g *gate) Run(ctx context.Context, c command.Cmd) ([]byte, error) {
	if mayMount(c) {
		n := g.mounting.Add(1)
		defer g.mounting.Add(-1)
		for {
			m := g.most.Load()
			if n <= m || g.most.CompareAndSwap(m, n) {
				break
			}
		}
	}
	g.entered <- c.String()
	select {
	case <-g.release:
		return nil, nil
	case <-ctx.Done(): // so a broken turn fails the test instead of hanging it
		return nil, ctx.Err()
	}
}

func TestSerializeMountsTakesTurns(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "mounts.lock")
	g := &gate{entered: make(chan string, 16), release: make(chan struct{})}
	// Two runners, as two processes of the host would have: the flock,
	// not a mutex in one runner, makes them take turns.
	a, b := SerializeMounts(g, lock), SerializeMounts(g, lock)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i, r := range []command.Runner{a, b, a, b} {
		wg.Go(func() {
			if _, err := r.Run(ctx, command.Z("create", "p/v"+string(rune('0'+i)))); err != nil {
				t.Error(err)
			}
		})
	}
	<-g.entered // one create holds the turn
	// A command that cannot mount does not wait for it.
	wg.Go(func() {
		if _, err := a.Run(ctx, command.Z("list", "-H")); err != nil {
			t.Error(err)
		}
	})
	if got := <-g.entered; got != "zfs list -H" {
		t.Fatalf("while a create held the turn, %q ran; want the list", got)
	}
	// Both wait in the runner: release them, then each create that
	// enters in turn.
	g.release <- struct{}{}
	g.release <- struct{}{}
	for range 3 {
		<-g.entered
		g.release <- struct{}{}
	}
	wg.Wait()
	if most := g.most.Load(); most != 1 {
		t.Errorf("%d mounting commands ran at once, want 1", most)
	}
}

func TestSerializeMountsGivesUpWithTheContext(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "mounts.lock")
	g := &gate{entered: make(chan string, 4), release: make(chan struct{})}
	r := SerializeMounts(g, lock)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = r.Run(context.Background(), command.Z("create", "p/a"))
	}()
	<-g.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.Run(ctx, command.Z("create", "p/b"))
	var ce *command.Error
	if !errors.Is(err, context.Canceled) || !errors.As(err, &ce) {
		t.Fatalf("a create waiting for its turn under a cancelled context = %v, want a command error wrapping context.Canceled", err)
	}
	g.release <- struct{}{}
	<-done
	// The abandoned wait released the lock it got: the next create runs.
	next := make(chan error, 1)
	go func() { _, err := r.Run(context.Background(), command.Z("create", "p/c")); next <- err }()
	<-g.entered
	g.release <- struct{}{}
	if err := <-next; err != nil {
		t.Fatal(err)
	}
}

func TestSerializeMountsWrappedTwice(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "mounts.lock")
	g := &gate{entered: make(chan string, 1), release: make(chan struct{}, 1)}
	g.release <- struct{}{}
	r := SerializeMounts(SerializeMounts(g, lock), lock)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.Run(ctx, command.Z("create", "p/a")); err != nil {
		t.Fatalf("a create through two layers of the same turn: %v", err)
	}
}
