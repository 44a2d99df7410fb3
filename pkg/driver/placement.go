package driver

import (
	"fmt"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/registry"
)

// candidate is a storage server that can take a volume.
type candidate struct {
	free        int64 // bytes free in its pool, as last read
	provisioned int64 // sum of its volumes' sizes (registry's view)
}

// nearlyEqual is how close (a twentieth) a server's free space must be to
// the most free for the two to count as equally free.
const nearlyEqual = 20

// choose picks the server for a volume of size bytes, or -1 when none has
// room: the one with the most free space, and among those about as free as
// it (within 5%), the one with the fewest bytes provisioned. Thin volumes
// barely change free space when created, so without the second rule every
// new volume would land on the same server until data arrives; with it,
// equal servers take turns. Ties keep the given (name) order.
func choose(cands []candidate, size int64) int {
	var most int64 = -1
	for _, c := range cands {
		if c.free >= size && c.free > most {
			most = c.free
		}
	}
	if most < 0 {
		return -1
	}
	best := -1
	for i, c := range cands {
		if c.free < size || c.free < most-most/nearlyEqual {
			continue
		}
		if best < 0 || c.provisioned < cands[best].provisioned {
			best = i
		}
	}
	return best
}

// place picks a healthy server with room for size bytes (see choose) from
// what the registry last read of each, or checks the pinned one. It asks no
// server anything: a slow or hung server cannot hold a create up, and is
// simply not healthy in the registry's view.
func (c *ControllerServer) place(pinned string, size int64) (*registry.Member, error) {
	members := c.servers.List()
	if pinned != "" {
		m, ok := c.servers.Get(pinned)
		if !ok {
			return nil, fmt.Errorf("%w: parameter server=%q: no such storage server", api.ErrInvalid, pinned)
		}
		members = []*registry.Member{m}
	}
	var healthy []*registry.Member
	var cands []candidate
	var largest int64
	var down []string
	for _, m := range members {
		st := m.Status()
		if !st.Healthy {
			down = append(down, m.Name+": "+st.Error)
			continue
		}
		healthy = append(healthy, m)
		cands = append(cands, candidate{free: st.Available, provisioned: st.Provisioned})
		largest = max(largest, st.Available)
	}
	if i := choose(cands, size); i >= 0 {
		return healthy[i], nil
	}
	switch {
	case len(healthy) == 0 && len(down) > 0:
		return nil, fmt.Errorf("%w: no storage server is healthy: %v", errUnavailable, down)
	case len(healthy) == 0:
		return nil, fmt.Errorf("%w: no storage servers are configured", errUnavailable)
	}
	return nil, fmt.Errorf("%w: none has %d bytes free (the most free is %d)", errNoRoom, size, largest)
}
