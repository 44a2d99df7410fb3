package mounter

import (
	"fmt"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/mountfake"
	"github.com/dots-csi/dots/internal/poll"
)

// seamsConfig returns a Config wired to the fake host, with short bounds;
// root is the one local-bind root, if any.
func seamsConfig(s *mountfake.Seams, mode, root string) Config {
	var roots []string
	if root != "" {
		roots = []string{root}
	}
	return Config{
		Mode:           mode,
		LocalBindRoots: roots,
		StatTimeout:    50 * time.Millisecond,
		UnmountTimeout: 50 * time.Millisecond,
		Mount:          s.Mounter,
		Stat:           s.Stat,
		Statfs:         s.Statfs,
		Unmount:        s.Unmount,
	}
}

func newTestHost(t *testing.T, s *mountfake.Seams, mode, root string) *Host {
	t.Helper()
	h, err := New(seamsConfig(s, mode, root))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Every abandoned call must end once the test releases its blocks.
		poll.Until(t, 5*time.Second, "abandoned filesystem calls end", func() error {
			if n := h.calls.pending(); n > 0 {
				return fmt.Errorf("%d calls still running", n)
			}
			return nil
		})
	})
	return h
}
