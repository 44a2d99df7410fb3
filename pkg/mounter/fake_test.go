package mounter

import (
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// hostSeams fakes stat, statfs and umount2 on top of mount-utils' fake
// mounter. Paths not configured behave like the real filesystem (stat) or
// like a healthy mount (unmount goes to the fake mounter).
type hostSeams struct {
	fake *mount.FakeMounter

	mu         sync.Mutex
	statErr    map[string]error
	statBlock  map[string]chan struct{}
	statCalls  map[string]int
	statfsVal  map[string]unix.Statfs_t
	statfsErr  map[string]error
	unmountFn  func(target string, flags int) error
	unmountLog []int
}

func newHostSeams() *hostSeams {
	return &hostSeams{
		fake:      mount.NewFakeMounter(nil),
		statErr:   map[string]error{},
		statBlock: map[string]chan struct{}{},
		statCalls: map[string]int{},
		statfsVal: map[string]unix.Statfs_t{},
		statfsErr: map[string]error{},
	}
}

func (s *hostSeams) stat(p string) error {
	s.mu.Lock()
	s.statCalls[p]++
	block, err := s.statBlock[p], s.statErr[p]
	s.mu.Unlock()
	if block != nil {
		<-block
	}
	if err != nil {
		return err
	}
	_, err = os.Stat(p)
	return err
}

func (s *hostSeams) statfs(p string, buf *unix.Statfs_t) error {
	s.mu.Lock()
	block, err, val := s.statBlock[p], s.statfsErr[p], s.statfsVal[p]
	s.mu.Unlock()
	if block != nil {
		<-block
	}
	if err != nil {
		return &os.PathError{Op: "statfs", Path: p, Err: err}
	}
	*buf = val
	return nil
}

func (s *hostSeams) unmount(target string, flags int) error {
	s.mu.Lock()
	s.unmountLog = append(s.unmountLog, flags)
	fn := s.unmountFn
	s.mu.Unlock()
	if fn != nil {
		return fn(target, flags)
	}
	return s.fake.Unmount(target)
}

// setStatfs sets what statfs of p returns.
func (s *hostSeams) setStatfs(p string, val unix.Statfs_t, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statfsVal[p] = val
	if err == nil {
		delete(s.statfsErr, p)
	} else {
		s.statfsErr[p] = err
	}
}

// setStatErr makes stat of p fail with err until cleared with nil.
func (s *hostSeams) setStatErr(p string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.statErr, p)
	} else {
		s.statErr[p] = err
	}
}

// blockStat makes stat and statfs of p hang until the test ends or the
// returned release is called.
func (s *hostSeams) blockStat(t *testing.T, p string) (release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.statBlock, p)
			s.mu.Unlock()
			close(ch)
		})
	}
	s.mu.Lock()
	s.statBlock[p] = ch
	s.mu.Unlock()
	t.Cleanup(release)
	return release
}

func (s *hostSeams) statCallsOf(p string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statCalls[p]
}

func (s *hostSeams) unmountFlags() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.unmountLog...)
}

// config returns a Config wired to the seams, with short bounds.
func (s *hostSeams) config(mode, root string) Config {
	return Config{
		Mode:           mode,
		LocalBindRoot:  root,
		StatTimeout:    50 * time.Millisecond,
		UnmountTimeout: 50 * time.Millisecond,
		Mount:          s.fake,
		Stat:           s.stat,
		Statfs:         s.statfs,
		Unmount:        s.unmount,
	}
}

// mountsAt returns the fake mount table entries at path.
func (s *hostSeams) mountsAt(path string) []mount.MountPoint {
	mps, _ := s.fake.List()
	var out []mount.MountPoint
	for _, mp := range mps {
		if mp.Path == path {
			out = append(out, mp)
		}
	}
	return out
}

func newTestHost(t *testing.T, s *hostSeams, mode, root string) *Host {
	t.Helper()
	h, err := New(s.config(mode, root))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Every abandoned call must end once the test releases its blocks.
		deadline := time.Now().Add(5 * time.Second)
		for h.calls.pending() > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := h.calls.pending(); n > 0 {
			t.Errorf("%d filesystem calls still running after the test", n)
		}
	})
	return h
}
