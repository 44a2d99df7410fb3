package poll

import (
	"errors"
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	n := 0
	if err := Wait(time.Minute, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("Wait = %v after %d calls", err, n)
	}
	never := errors.New("never")
	if err := Wait(20*time.Millisecond, func() error { return never }); !errors.Is(err, never) {
		t.Fatalf("Wait = %v, want the last error", err)
	}
}
