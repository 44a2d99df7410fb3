// Package mountfake fakes the host seams of a mounter for unit tests: the
// mount table (mount-utils' FakeMounter), stat, statfs and umount2, with
// answers a test sets per path, and calls a test can hold hanging to play a
// dead NFS server. Paths not configured behave like the real filesystem
// (stat), a healthy mount (statfs answers the default) and a plain unmount
// of the fake table.
package mountfake

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// Seams is one fake host.
type Seams struct {
	Mounter *mount.FakeMounter
	// Entered receives a path when a stat or statfs of it starts to hang
	// (see Block); it never blocks the call.
	Entered chan string

	mu          sync.Mutex
	statErr     map[string]error
	blocked     map[string]chan struct{}
	statCalls   map[string]int
	statfsVal   map[string]unix.Statfs_t
	statfsErr   map[string]error
	statfsOK    unix.Statfs_t
	unmountFunc func(target string, flags int) error
	unmountLog  []int
	groups      map[string]uint32
	groupErr    error
	mountErr    map[string]error
	mountHang   map[string]bool
	mountTries  []MountTry
}

// MountTry is one NFS mount attempt (MountNFS): its source and options.
type MountTry struct {
	Source  string
	Options []string
}

// DefaultStatfs is what statfs answers for a path the test did not set: a
// 64 MiB file system, a quarter used.
var DefaultStatfs = unix.Statfs_t{Bsize: 4096, Frsize: 4096, Blocks: 16384, Bfree: 12288, Bavail: 12288, Files: 1000, Ffree: 990}

// New returns a fake host with an empty mount table.
func New() *Seams {
	return &Seams{
		Mounter:   mount.NewFakeMounter(nil),
		Entered:   make(chan string, 16),
		statErr:   map[string]error{},
		blocked:   map[string]chan struct{}{},
		statCalls: map[string]int{},
		statfsVal: map[string]unix.Statfs_t{},
		statfsErr: map[string]error{},
		statfsOK:  DefaultStatfs,
		groups:    map[string]uint32{},
		mountErr:  map[string]error{},
		mountHang: map[string]bool{},
	}
}

// ShareGroup records that path was given to gid, or fails with the error
// of SetShareGroupErr.
func (s *Seams) ShareGroup(path string, gid uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groupErr != nil {
		return s.groupErr
	}
	s.groups[path] = gid
	return nil
}

// MountNFS is the fake NFS mount (mounter.Config.NFSMount): it logs the
// try, then fails with the error set for source, or hangs until ctx ends
// (a dead server: the mounter ends the try), or mounts in the fake table.
func (s *Seams) MountNFS(ctx context.Context, source, target string, options []string) error {
	s.mu.Lock()
	s.mountTries = append(s.mountTries, MountTry{Source: source, Options: append([]string(nil), options...)})
	err, hang := s.mountErr[source], s.mountHang[source]
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return fmt.Errorf("mount %s: %w", source, ctx.Err())
	}
	if err != nil {
		return err
	}
	return s.Mounter.Mount(source, target, "nfs4", options)
}

// SetMountErr makes NFS mounts of source fail with err (nil: succeed).
func (s *Seams) SetMountErr(source string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mountErr[source] = err
}

// HangMount makes NFS mounts of source hang until their context ends.
func (s *Seams) HangMount(source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mountHang[source] = true
}

// MountTries lists every NFS mount attempt so far.
func (s *Seams) MountTries() []MountTry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]MountTry(nil), s.mountTries...)
}

// SetShareGroupErr makes ShareGroup fail with err (nil: succeed).
func (s *Seams) SetShareGroupErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groupErr = err
}

// Group is the gid path was given to, if it was.
func (s *Seams) Group(path string) (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[path]
	return g, ok
}

// wait hangs while p is blocked.
func (s *Seams) wait(p string) {
	s.mu.Lock()
	block := s.blocked[p]
	s.mu.Unlock()
	if block != nil {
		select {
		case s.Entered <- p:
		default:
		}
		<-block
	}
}

// Stat is the fake stat: the error set for p, else os.Stat.
func (s *Seams) Stat(p string) error {
	s.mu.Lock()
	s.statCalls[p]++
	s.mu.Unlock()
	s.wait(p)
	s.mu.Lock()
	err := s.statErr[p]
	s.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = os.Stat(p)
	return err
}

// Statfs is the fake statfs: the error or value set for p (the stat error
// too), else DefaultStatfs.
func (s *Seams) Statfs(p string, buf *unix.Statfs_t) error {
	s.wait(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.statErr[p]; err != nil {
		return err
	}
	if err := s.statfsErr[p]; err != nil {
		return &os.PathError{Op: "statfs", Path: p, Err: err}
	}
	if v, ok := s.statfsVal[p]; ok {
		*buf = v
	} else {
		*buf = s.statfsOK
	}
	return nil
}

// Unmount is the fake umount2: the function set with SetUnmount, else an
// unmount of the fake table. Every call's flags are logged.
func (s *Seams) Unmount(target string, flags int) error {
	s.mu.Lock()
	s.unmountLog = append(s.unmountLog, flags)
	fn := s.unmountFunc
	s.mu.Unlock()
	if fn != nil {
		return fn(target, flags)
	}
	return s.Mounter.Unmount(target)
}

// SetStatfs sets what statfs of p returns.
func (s *Seams) SetStatfs(p string, val unix.Statfs_t, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statfsVal[p] = val
	if err == nil {
		delete(s.statfsErr, p)
	} else {
		s.statfsErr[p] = err
	}
}

// SetStatErr makes stat and statfs of p fail with err until cleared with nil.
func (s *Seams) SetStatErr(p string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.statErr, p)
	} else {
		s.statErr[p] = err
	}
}

// SetUnmount replaces the unmount of the fake table.
func (s *Seams) SetUnmount(fn func(target string, flags int) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unmountFunc = fn
}

// Block makes stat and statfs of p hang until the test ends or the
// returned release is called.
func (s *Seams) Block(t testing.TB, p string) (release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.blocked, p)
			s.mu.Unlock()
			close(ch)
		})
	}
	s.mu.Lock()
	s.blocked[p] = ch
	s.mu.Unlock()
	t.Cleanup(release)
	return release
}

// StatCalls counts the stats of p so far.
func (s *Seams) StatCalls(p string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statCalls[p]
}

// UnmountFlags lists the flags of every unmount so far.
func (s *Seams) UnmountFlags() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.unmountLog...)
}

// MountsAt returns the fake mount table's entries at path.
func (s *Seams) MountsAt(path string) []mount.MountPoint {
	mps, _ := s.Mounter.List()
	var out []mount.MountPoint
	for _, mp := range mps {
		if mp.Path == path {
			out = append(out, mp)
		}
	}
	return out
}
