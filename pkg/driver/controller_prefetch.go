package driver

import (
	"context"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// A listing's next page is fetched while the caller still reads the one it
// was given: a full pass then costs about what the servers' own answers
// cost, instead of that plus the controller's decode and re-encode of each
// page in turn. Pages are keyed by the token that asks for them; one not
// asked for within prefetchTTL, or beyond prefetchMax pending, is dropped.
// A prefetched page is as fresh as when it was read, which the CSI spec
// allows: a listing is not a snapshot of the cluster either way.
const (
	prefetchTTL = 30 * time.Second
	prefetchMax = 16
)

type pageKey struct {
	token string
	max   int32
}

type pagePromise struct {
	done    chan struct{}
	resp    *csi.ListVolumesResponse
	err     error
	started time.Time
}

// prefetcher holds pages read ahead, for ListVolumes.
type prefetcher struct {
	mu    sync.Mutex
	pages map[pageKey]*pagePromise
}

// take returns the page read ahead for key, waiting for it, or nil when
// there is none (or reading it failed: the caller reads it again).
func (p *prefetcher) take(ctx context.Context, key pageKey) *csi.ListVolumesResponse {
	p.mu.Lock()
	pr := p.pages[key]
	delete(p.pages, key)
	p.mu.Unlock()
	if pr == nil {
		return nil
	}
	select {
	case <-pr.done:
	case <-ctx.Done():
		return nil
	}
	if pr.err != nil {
		return nil
	}
	return pr.resp
}

// start reads the page of key in the background with fetch, unless that
// page is pending already or too many are.
func (p *prefetcher) start(key pageKey, fetch func(ctx context.Context) (*csi.ListVolumesResponse, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pages == nil {
		p.pages = map[pageKey]*pagePromise{}
	}
	now := time.Now()
	for k, pr := range p.pages {
		if now.Sub(pr.started) > prefetchTTL {
			delete(p.pages, k)
		}
	}
	if _, ok := p.pages[key]; ok || len(p.pages) >= prefetchMax {
		return
	}
	pr := &pagePromise{done: make(chan struct{}), started: now}
	p.pages[key] = pr
	go func() {
		defer close(pr.done)
		ctx, cancel := context.WithTimeout(context.Background(), prefetchTTL)
		defer cancel()
		pr.resp, pr.err = fetch(ctx)
	}()
}
