// Package poll waits in tests for a condition that something else makes
// true, when there is no signal to wait on (a process exiting, a mount
// appearing, a server answering). It is the one polling loop of the tests.
package poll

import (
	"testing"
	"time"
)

// Until calls cond until it returns nil, and fails the test with cond's
// last error when timeout passes first. The interval starts at 5 ms and
// doubles up to 200 ms, so quick conditions cost little and slow ones
// little CPU.
func Until(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Wait(timeout, cond); err != nil {
		t.Fatalf("%s: not within %s: %v", what, timeout, err)
	}
}

// Wait is Until without a test: it returns cond's last error, or nil.
func Wait(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(min(delay, time.Until(deadline)+time.Millisecond))
		delay = min(2*delay, 200*time.Millisecond)
	}
}
