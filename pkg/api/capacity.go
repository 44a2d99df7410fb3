package api

import (
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// MinCapacity is the smallest volume: an empty ZFS file system already
// references around 100 KiB of metadata, and a refquota below what a
// dataset references is refused. Above it, sizes are exact to the byte:
// refquota holds any byte count.
const MinCapacity int64 = 1 << 20

// ResolveCapacity picks the size of a volume for a CSI capacity range: the
// required bytes exactly, or def (capped by the limit) when none are
// required; at least MinCapacity. A range that size cannot satisfy wraps
// ErrOutOfRange; negative bytes wrap ErrInvalid.
func ResolveCapacity(r *csi.CapacityRange, def int64) (int64, error) {
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	if req < 0 || lim < 0 {
		return 0, fmt.Errorf("%w: negative capacity range (required %d, limit %d)", ErrInvalid, req, lim)
	}
	if lim > 0 && req > lim {
		return 0, fmt.Errorf("%w: required %d bytes exceeds limit %d", ErrOutOfRange, req, lim)
	}
	want := req
	if want == 0 {
		want = def
		if lim > 0 && lim < want {
			want = lim
		}
	}
	size := max(want, MinCapacity)
	if lim > 0 && size > lim {
		return 0, fmt.Errorf("%w: the smallest volume is %d bytes; the limit is %d", ErrOutOfRange, MinCapacity, lim)
	}
	return size, nil
}

// CapacityFits reports whether a volume of size bytes satisfies r.
func CapacityFits(size int64, r *csi.CapacityRange) bool {
	if size < r.GetRequiredBytes() {
		return false
	}
	return r.GetLimitBytes() == 0 || size <= r.GetLimitBytes()
}

// NoCapacityRange reports a range that asks for nothing in particular, so
// the default size applies.
func NoCapacityRange(r *csi.CapacityRange) bool {
	return r.GetRequiredBytes() == 0 && r.GetLimitBytes() == 0
}
