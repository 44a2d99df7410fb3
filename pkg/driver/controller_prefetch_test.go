package driver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func TestPrefetcher(t *testing.T) {
	ctx := context.Background()
	var p prefetcher
	key := pageKey{token: "s/after:v-1", max: 10}
	if got := p.take(ctx, key); got != nil {
		t.Fatalf("nothing read ahead, got %v", got)
	}
	release := make(chan struct{})
	reads := 0
	p.start(key, func(context.Context) (*csi.ListVolumesResponse, error) {
		reads++
		<-release
		return &csi.ListVolumesResponse{NextToken: "s/after:v-2"}, nil
	})
	// The same page again while pending: not read twice.
	p.start(key, func(context.Context) (*csi.ListVolumesResponse, error) {
		t.Error("a pending page read again")
		return nil, nil
	})
	close(release)
	if got := p.take(ctx, key); got.GetNextToken() != "s/after:v-2" || reads != 1 {
		t.Fatalf("take = %v after %d reads, want the page read ahead once", got, reads)
	}
	if got := p.take(ctx, key); got != nil {
		t.Fatalf("a page taken twice: %v", got)
	}

	// A failed read ahead is no answer: the caller reads the page itself.
	p.start(key, func(context.Context) (*csi.ListVolumesResponse, error) { return nil, errors.New("unavailable") })
	if got := p.take(ctx, key); got != nil {
		t.Fatalf("a failed read ahead answered: %v", got)
	}

	// Bounded: beyond prefetchMax pending pages nothing more is read.
	block := make(chan struct{})
	defer close(block)
	for i := range prefetchMax + 3 {
		p.start(pageKey{token: fmt.Sprint(i)}, func(context.Context) (*csi.ListVolumesResponse, error) {
			<-block
			return &csi.ListVolumesResponse{}, nil
		})
	}
	p.mu.Lock()
	n := len(p.pages)
	// Pages never asked for expire.
	for _, pr := range p.pages {
		pr.started = time.Now().Add(-2 * prefetchTTL)
	}
	p.mu.Unlock()
	if n != prefetchMax {
		t.Fatalf("%d pages pending, want at most %d", n, prefetchMax)
	}
	p.start(key, func(context.Context) (*csi.ListVolumesResponse, error) { return &csi.ListVolumesResponse{}, nil })
	p.mu.Lock()
	n = len(p.pages)
	p.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d pages pending after the others expired, want 1", n)
	}
}
