package zfs

import (
	"testing"
	"time"
)

func TestNameLocks(t *testing.T) {
	var n nameLocks
	unlockA := n.lock("a")
	// Another name does not wait.
	n.lock("b")()
	got, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		unlock := n.lock("a")
		close(got)
		unlock()
	}()
	select {
	case <-got:
		t.Fatal("a second holder of a got it while the first held it")
	case <-time.After(20 * time.Millisecond):
	}
	unlockA()
	<-got
	<-done
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.locks) != 0 {
		t.Errorf("locks left behind: %v", n.locks)
	}
}
