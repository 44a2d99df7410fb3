package mounter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"

	"github.com/dots-csi/dots/internal/mountfake"
	"golang.org/x/sys/unix"
)

func TestUnmount(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	dir := t.TempDir()

	// Gone already: success.
	if err := h.Unmount(ctx, filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("missing target: %v", err)
	}
	// A directory that is not mounted is removed.
	plain := filepath.Join(dir, "plain")
	must(t, os.Mkdir(plain, 0o750))
	must(t, h.Unmount(ctx, plain))
	if _, err := os.Stat(plain); !os.IsNotExist(err) {
		t.Fatalf("plain directory not removed: %v", err)
	}
	// A mounted one is unmounted, then removed; twice is fine.
	staging := filepath.Join(dir, "st")
	must(t, h.Stage(ctx, nfsVol, staging, nil, false))
	must(t, h.Unmount(ctx, staging))
	must(t, h.Unmount(ctx, staging))
	if len(s.MountsAt(staging)) != 0 {
		t.Fatalf("still mounted: %+v", s.MountsAt(staging))
	}
	if _, err := os.Stat(staging); !os.IsNotExist(err) {
		t.Fatalf("staging not removed: %v", err)
	}
	// Files in an unmounted directory are data: kept, and reported.
	full := filepath.Join(dir, "full")
	must(t, os.Mkdir(full, 0o750))
	must(t, os.WriteFile(filepath.Join(full, "keep"), []byte("x"), 0o600))
	if err := h.Unmount(ctx, full); err == nil {
		t.Fatal("non-empty directory removed without error")
	}
	if _, err := os.Stat(filepath.Join(full, "keep")); err != nil {
		t.Fatalf("file lost: %v", err)
	}
}

func TestUnmountEscalatesOnDeadServer(t *testing.T) {
	tests := []struct {
		name      string
		behaviour func(flags int, block <-chan struct{}) error // before the fake unmounts
		want      []int
	}{
		{"plain hangs, force works", func(flags int, block <-chan struct{}) error {
			if flags == 0 {
				<-block
				return syscall.EINVAL // by the time it returns, force has unmounted
			}
			return nil
		}, []int{0, unix.MNT_FORCE}},
		{"plain and force hang, lazy works", func(flags int, block <-chan struct{}) error {
			if flags != unix.MNT_DETACH {
				<-block
				return syscall.EINVAL
			}
			return nil
		}, []int{0, unix.MNT_FORCE, unix.MNT_DETACH}},
		{"plain fails with ESTALE", func(flags int, _ <-chan struct{}) error {
			if flags == 0 {
				return syscall.ESTALE
			}
			return nil
		}, []int{0, unix.MNT_FORCE}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mountfake.New()
			h := newTestHost(t, s, ModeNFS, "")
			ctx := context.Background()
			staging := filepath.Join(t.TempDir(), "st")
			must(t, h.Stage(ctx, nfsVol, staging, nil, false))
			block := make(chan struct{})
			t.Cleanup(func() { close(block) })
			s.SetUnmount(func(target string, flags int) error {
				if err := tc.behaviour(flags, block); err != nil {
					return &os.PathError{Op: "umount", Path: target, Err: err}
				}
				return s.Mounter.Unmount(target)
			})
			if err := h.Unmount(ctx, staging); err != nil {
				t.Fatalf("Unmount: %v", err)
			}
			if got := s.UnmountFlags(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("unmount attempts %v, want %v", got, tc.want)
			}
			if len(s.MountsAt(staging)) != 0 {
				t.Fatal("still mounted")
			}
		})
	}
}

func TestUnmountEverythingHangs(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	staging := filepath.Join(t.TempDir(), "st")
	must(t, h.Stage(ctx, nfsVol, staging, nil, false))
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	s.SetUnmount(func(string, int) error { <-block; return nil })
	err := h.Unmount(ctx, staging)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Unmount = %v, want ErrTimeout after every attempt", err)
	}
	if got := s.UnmountFlags(); len(got) != 3 {
		t.Fatalf("attempts %v, want plain, force, lazy", got)
	}
}

func TestUnmountBusy(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	staging := filepath.Join(t.TempDir(), "st")
	must(t, h.Stage(ctx, nfsVol, staging, nil, false))
	s.SetUnmount(func(target string, flags int) error {
		if flags == 0 {
			return &os.PathError{Op: "umount", Path: target, Err: syscall.EBUSY}
		}
		return s.Mounter.Unmount(target)
	})
	// In use on a live server: reported, not forced.
	if err := h.Unmount(ctx, staging); !errors.Is(err, ErrBusy) {
		t.Fatalf("busy live mount: %v, want ErrBusy", err)
	}
	if got := s.UnmountFlags(); !reflect.DeepEqual(got, []int{0}) {
		t.Fatalf("attempts %v, want only the plain one", got)
	}
	// Busy because the server is dead: forced.
	s.SetStatErr(staging, syscall.ESTALE)
	if err := h.Unmount(ctx, staging); err != nil {
		t.Fatalf("busy dead mount: %v", err)
	}
	if got := s.UnmountFlags(); !reflect.DeepEqual(got, []int{0, 0, unix.MNT_FORCE}) {
		t.Fatalf("attempts %v", got)
	}
}

func TestUnmountOtherError(t *testing.T) {
	s := mountfake.New()
	h := newTestHost(t, s, ModeNFS, "")
	ctx := context.Background()
	staging := filepath.Join(t.TempDir(), "st")
	must(t, h.Stage(ctx, nfsVol, staging, nil, false))
	s.SetUnmount(func(target string, flags int) error {
		return &os.PathError{Op: "umount", Path: target, Err: syscall.EPERM}
	})
	if err := h.Unmount(ctx, staging); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("Unmount = %v, want EPERM", err)
	}
	if got := s.UnmountFlags(); len(got) != 1 {
		t.Fatalf("EPERM must not escalate; attempts %v", got)
	}
}
