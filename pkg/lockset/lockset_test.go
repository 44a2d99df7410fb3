package lockset

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func TestTryAcquireRelease(t *testing.T) {
	l := New()
	if !l.TryAcquire("a") {
		t.Fatal("first acquire of a failed")
	}
	if l.TryAcquire("a") {
		t.Fatal("second acquire of a succeeded while held")
	}
	if !l.TryAcquire("b") {
		t.Fatal("b is independent of a")
	}
	l.Release("a")
	if !l.TryAcquire("a") {
		t.Fatal("acquire after release failed")
	}
	l.Release("zzz") // not held: no-op
}

func TestTryAcquireAllIsAtomic(t *testing.T) {
	l := New()
	l.TryAcquire("b")
	if l.TryAcquireAll("a", "b") {
		t.Fatal("TryAcquireAll succeeded although b is held")
	}
	if !l.TryAcquire("a") {
		t.Fatal("failed TryAcquireAll must not leave a held")
	}
}

func TestOneWinnerUnderContention(t *testing.T) {
	l := New()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.TryAcquire("k") {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d goroutines acquired the same key, want 1", wins.Load())
	}
}

func TestAcquire(t *testing.T) {
	l := New()
	release, err := l.Acquire("volume/a", "snapshot/s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire("snapshot/s"); !errors.Is(err, ErrBusy) {
		t.Fatalf("held key: %v, want ErrBusy", err)
	}
	release()
	if _, err := l.Acquire("volume/a", "snapshot/s"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}
