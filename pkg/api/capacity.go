package api

import (
	"fmt"
	"math"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// CapacityGranularity is what RoundCapacity rounds up to. 1 MiB keeps
// refquota values readable, is a multiple of every recordsize ZFS accepts
// and is what Kubernetes sizes (Mi, Gi) are made of anyway.
const CapacityGranularity int64 = 1 << 20

// RoundCapacity rounds a positive byte count up to CapacityGranularity.
// Values so large that rounding up would overflow saturate at the largest
// multiple, which no pool can hold, so servers answer that there is no
// space.
func RoundCapacity(c int64) int64 {
	if c <= 0 {
		return c
	}
	limit := math.MaxInt64 - (math.MaxInt64 % CapacityGranularity)
	if c > limit {
		return limit
	}
	return (c + CapacityGranularity - 1) / CapacityGranularity * CapacityGranularity
}

// ResolveCapacity picks the size of a volume for a CSI capacity range: the
// required bytes, or def (capped by the limit) when none are required,
// rounded up with RoundCapacity. A range the rounded size cannot satisfy
// wraps ErrOutOfRange; negative bytes wrap ErrInvalid.
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
	size := RoundCapacity(want)
	if lim > 0 && size > lim {
		return 0, fmt.Errorf("%w: %d bytes rounded up to %d exceeds limit %d", ErrOutOfRange, want, size, lim)
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
