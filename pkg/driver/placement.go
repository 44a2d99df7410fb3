package driver

// candidate is a storage server that answered for placement.
type candidate struct {
	free        int64 // bytes free in its pool, just read
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
