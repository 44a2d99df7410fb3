package failover

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

// TestLeadTakesTurns: processes electing on one Lease never run at once,
// and when a term's run returns the Lease is released, so another process
// (or the same one) leads next.
func TestLeadTakesTurns(t *testing.T) {
	cs := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var inside, overlaps atomic.Int32
	terms := make(chan int, 16)
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			errs <- Lead(ctx, cs, "dots", "test-lease", "test duty", func(term context.Context) error {
				if inside.Add(1) > 1 {
					overlaps.Add(1)
				}
				defer inside.Add(-1)
				select {
				case terms <- i:
				default:
				}
				return nil // the term ends: the Lease is released
			})
		}()
	}
	deadline := time.After(time.Minute) // a failure guard, not a measure
	for n := 0; n < 3; n++ {
		select {
		case <-terms:
		case <-deadline:
			t.Fatalf("%d terms within a minute, want 3", n)
		}
	}
	cancel()
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := overlaps.Load(); n > 0 {
		t.Errorf("%d terms overlapped another", n)
	}
}
