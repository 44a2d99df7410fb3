// Package lockset serializes operations per key (a volume or snapshot name)
// without a global mutex: a busy key is reported as ErrBusy, which every
// daemon's error table maps to Aborted, so the sidecar retries, as the CSI
// spec asks.
package lockset

import (
	"errors"
	"fmt"
	"sync"
)

// ErrBusy reports a key another operation holds.
var ErrBusy = errors.New("an operation is already in progress")

// Acquire takes every key or none. It returns the function that releases
// them, or an error wrapping ErrBusy naming the keys.
func (l *LockSet) Acquire(keys ...string) (release func(), err error) {
	if !l.TryAcquireAll(keys...) {
		return nil, fmt.Errorf("%w on %v", ErrBusy, keys)
	}
	return func() { l.Release(keys...) }, nil
}

// LockSet holds the keys currently being operated on.
type LockSet struct {
	mu   sync.Mutex
	busy map[string]struct{}
}

// New returns an empty LockSet.
func New() *LockSet {
	return &LockSet{busy: make(map[string]struct{})}
}

// TryAcquire takes key and reports true, or reports false if it is held.
func (l *LockSet) TryAcquire(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, held := l.busy[key]; held {
		return false
	}
	l.busy[key] = struct{}{}
	return true
}

// TryAcquireAll takes every key or none of them.
func (l *LockSet) TryAcquireAll(keys ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if _, held := l.busy[k]; held {
			return false
		}
	}
	for _, k := range keys {
		l.busy[k] = struct{}{}
	}
	return true
}

// Release frees keys; releasing a key that is not held is a no-op.
func (l *LockSet) Release(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.busy, k)
	}
}
