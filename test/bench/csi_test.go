//go:build integration

package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func mountCaps() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}
}

func createReq(name string, size int64) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountCaps(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: size}}
}

// timed runs op for each of n items with conc workers and returns each
// op's duration (in item order), the wall time of all, and the first
// error (the others still run).
func timed(n, conc int, op func(ctx context.Context, i int) error) ([]time.Duration, time.Duration, error) {
	ds := make([]time.Duration, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	t0 := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				s := time.Now()
				errs[i] = op(ctx, i)
				ds[i] = time.Since(s)
				cancel()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	wall := time.Since(t0)
	failed := 0
	var first error
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	if first != nil {
		return ds, wall, fmt.Errorf("%d of %d failed, first: %w", failed, n, first)
	}
	return ds, wall, nil
}
