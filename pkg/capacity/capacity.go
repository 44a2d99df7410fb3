// Package capacity turns a CSI capacity range into the size of a volume.
package capacity

import (
	"errors"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// Sentinel errors for capacity ranges.
var (
	ErrInvalid    = errors.New("invalid capacity range")
	ErrOutOfRange = errors.New("capacity out of range")
)

// Resolve picks the size for a request: the required bytes (or def when the
// request names neither bound) rounded up by round, and never above the
// limit. round must return a value >= its argument.
func Resolve(r *csi.CapacityRange, def int64, round func(int64) int64) (int64, error) {
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	if req < 0 || lim < 0 {
		return 0, fmt.Errorf("%w: negative bytes (required %d, limit %d)", ErrInvalid, req, lim)
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
	size := round(want)
	if lim > 0 && size > lim {
		return 0, fmt.Errorf("%w: %d bytes rounded up to %d exceeds limit %d", ErrOutOfRange, want, size, lim)
	}
	return size, nil
}

// Fits reports whether an existing volume of size bytes satisfies r, for
// idempotent CreateVolume.
func Fits(size int64, r *csi.CapacityRange) bool {
	if size < r.GetRequiredBytes() {
		return false
	}
	return r.GetLimitBytes() == 0 || size <= r.GetLimitBytes()
}
