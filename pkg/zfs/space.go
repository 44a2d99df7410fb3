package zfs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// spaceCache is the pool's space as last read (`zfs get used,available`
// of the root dataset: at Open, by every Stats of the pool monitor, after
// each maintenance pass, and before a create the cache would refuse), less
// what thick creates and expansions took since. Creates check against it instead of reading the
// pool each time.
//
// What the check guarantees: no volume is created larger than the space
// the pool had free when last read, minus the reservations this server
// made since (in flight or done). Thin volumes may overcommit the pool by
// design (their refquota reserves nothing), as before; a thick volume's
// refreservation is enforced by ZFS itself, so a create that the cache
// lets through on a pool that filled up since the last read still fails
// (ErrNoSpace from zfs) rather than promising space that is not there.
type spaceCache struct {
	mu      sync.Mutex
	c       Capacity
	readAt  time.Time // when the last read started; zero: never read
	pending int64     // bytes thick creates and expansions in flight reserve
}

// Capacity reports the pool's bytes (exact: `zfs get -Hp`; zpool's own
// numbers are rounded on zfs-fuse) as last read, less reservations made
// since. Only the first call reads the pool.
func (p *Pool) Capacity(ctx context.Context) (Capacity, error) {
	p.space.mu.Lock()
	read := !p.space.readAt.IsZero()
	p.space.mu.Unlock()
	if !read {
		return p.RefreshCapacity(ctx)
	}
	c, _ := p.CapacityAt()
	return c, nil
}

// CapacityAt is Capacity from memory, with when it was read (zero: never).
func (p *Pool) CapacityAt() (Capacity, time.Time) {
	p.space.mu.Lock()
	defer p.space.mu.Unlock()
	c := p.space.c
	c.Available = max(c.Available-p.space.pending, 0)
	c.Used += p.space.pending
	return c, p.space.readAt
}

// RefreshCapacity reads the pool's space now.
func (p *Pool) RefreshCapacity(ctx context.Context) (Capacity, error) {
	start := time.Now()
	t, err := p.getProps(ctx, depthSelf, []string{propUsed, propAvailable}, p.name)
	if err != nil {
		return Capacity{}, err
	}
	d := t.props[p.name]
	p.setCapacity(d.int(propUsed), d.int(propAvailable), start)
	c, _ := p.CapacityAt()
	return c, nil
}

// setCapacity records a read of the root dataset's space that started at
// readAt; an older read than the one kept is ignored.
func (p *Pool) setCapacity(used, available int64, readAt time.Time) {
	p.space.mu.Lock()
	defer p.space.mu.Unlock()
	if readAt.Before(p.space.readAt) {
		return
	}
	p.space.c = Capacity{Used: used, Available: available, Size: used + available}
	p.space.readAt = readAt
}

// claimSpace is takeSpace, which a refusal sends back to the pool once:
// the cache may predate space that deletes gave back (they do not read the
// pool), and a create must not be refused for space that is free.
func (p *Pool) claimSpace(ctx context.Context, bytes int64, reserve bool, what string) (done func(ok bool), err error) {
	done, err = p.takeSpace(bytes, reserve, what)
	if errors.Is(err, ErrNoSpace) {
		if _, rerr := p.RefreshCapacity(ctx); rerr == nil {
			done, err = p.takeSpace(bytes, reserve, what)
		}
	}
	return done, err
}

// takeSpace checks that bytes fit in the free space (see spaceCache) and,
// for a reservation (a thick volume), holds them until done is called
// with whether the reservation now exists on the pool.
func (p *Pool) takeSpace(bytes int64, reserve bool, what string) (done func(ok bool), err error) {
	p.space.mu.Lock()
	defer p.space.mu.Unlock()
	avail := p.space.c.Available - p.space.pending
	if bytes > avail {
		return nil, fmt.Errorf("%w: %s: %d bytes asked, %d available in pool %s", ErrNoSpace, what, bytes, max(avail, 0), p.name)
	}
	if !reserve {
		return func(bool) {}, nil
	}
	p.space.pending += bytes
	return func(ok bool) {
		finished := time.Now()
		p.space.mu.Lock()
		defer p.space.mu.Unlock()
		p.space.pending -= bytes
		// A read that started after the reservation existed counts it
		// already.
		if ok && p.space.readAt.Before(finished) {
			p.space.c.Available -= bytes
			p.space.c.Used += bytes
		}
	}, nil
}
