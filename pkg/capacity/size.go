// Package capacity reads and prints sizes for people: the sizes in flags
// and config ("20Gi"), and the sizes the client shows. The sizes of
// requests follow the contract in pkg/api.
package capacity

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrInvalid reports a size that does not parse.
var ErrInvalid = errors.New("invalid size")

var units = []struct {
	suffix string
	factor int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50},
	{"K", 1e3}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15},
}

// ParseSize reads a size the way Kubernetes writes them: plain bytes,
// binary suffixes (Ki, Mi, Gi, Ti, Pi) or decimal ones (K, M, G, T, P).
func ParseSize(s string) (int64, error) {
	num, factor := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, factor = strings.TrimSuffix(num, u.suffix), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: size %q: want a whole number of bytes, optionally with Ki, Mi, Gi, Ti, K, M, G, T", ErrInvalid, s)
	}
	if n > math.MaxInt64/factor {
		return 0, fmt.Errorf("%w: size %q is too large", ErrInvalid, s)
	}
	return n * factor, nil
}

// Human writes bytes rounded to one decimal with a binary suffix, for tables.
func Human(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(b)/float64(div), "KMGTP"[exp])
}
