package zfs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// MaxNameLen bounds the names of CSI requests (the spec's 128 bytes).
// MaxIDLen bounds IDs, the names datasets and snapshots have in the pool:
// with the pool name (at most MaxPoolNameLen) and the internal prefixes, the
// longest full ZFS name dots builds (POOL/dots/trash/ID_EXPORTID@ID) stays
// well under ZFS's 255 bytes.
const (
	MaxNameLen     = 128
	MaxIDLen       = 63
	MaxPoolNameLen = 32
)

// hashedIDPrefix starts the ID of a name longer than MaxIDLen; user names
// cannot start with "_", so hashed and plain IDs never collide.
const hashedIDPrefix = "_h"

// CapacityGranularity is what RoundCapacity rounds up to. 1 MiB keeps
// refquota values readable, is a multiple of every recordsize ZFS accepts
// and is what Kubernetes sizes (Mi, Gi) are made of anyway.
const CapacityGranularity int64 = 1 << 20

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)
	poolNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.:-]*$`)
)

var hashedIDRE = regexp.MustCompile(`^_h[0-9a-f]{40}$`)

// IDFor returns the ID of a valid volume or snapshot name: the name itself
// when it is at most MaxIDLen long (readable in `zfs list`), otherwise
// "_h" and 160 bits of its SHA-256. The mapping is deterministic, so a
// repeated CreateVolume finds what the first one made.
func IDFor(name string) string {
	if len(name) <= MaxIDLen {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return hashedIDPrefix + hex.EncodeToString(sum[:20])
}

// ValidateID checks an ID: a valid name of at most MaxIDLen, or a hashed ID.
func ValidateID(id string) error {
	if hashedIDRE.MatchString(id) {
		return nil
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%w: id is %d characters, at most %d allowed", ErrInvalid, len(id), MaxIDLen)
	}
	return ValidateName(id)
}

// ValidateName checks a volume or snapshot name of a request. Names start
// with a letter or digit, so every internal name dots makes (they start
// with "_") can never collide with one a user asked for.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: name is %d characters, at most %d allowed", ErrInvalid, len(name), MaxNameLen)
	case !nameRE.MatchString(name):
		return fmt.Errorf("%w: name %q: must match %s", ErrInvalid, name, nameRE)
	case strings.Contains(name, ".."):
		return fmt.Errorf("%w: name %q contains \"..\"", ErrInvalid, name)
	}
	return nil
}

// ValidatePoolName checks a pool name against ZFS's rules and the words
// zpool reserves for vdev types.
func ValidatePoolName(name string) error {
	if name == "" || len(name) > MaxPoolNameLen {
		return fmt.Errorf("%w: pool name must be 1..%d characters", ErrInvalid, MaxPoolNameLen)
	}
	if !poolNameRE.MatchString(name) {
		return fmt.Errorf("%w: pool name %q: must match %s", ErrInvalid, name, poolNameRE)
	}
	for _, reserved := range []string{"mirror", "raidz", "spare", "log", "cache", "draid"} {
		if strings.HasPrefix(name, reserved) {
			return fmt.Errorf("%w: pool name %q starts with the reserved word %q", ErrInvalid, name, reserved)
		}
	}
	if len(name) >= 2 && name[0] == 'c' && name[1] >= '0' && name[1] <= '9' {
		return fmt.Errorf("%w: pool name %q looks like a device name", ErrInvalid, name)
	}
	return nil
}

// RoundCapacity rounds a positive byte count up to CapacityGranularity.
// Values so large that rounding up would overflow saturate at the largest
// multiple, which no pool can hold, so callers report ErrNoSpace.
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

func validateCapacity(c int64) error {
	if c <= 0 {
		return fmt.Errorf("%w: capacity must be positive, got %d", ErrInvalid, c)
	}
	return nil
}

// Internal snapshot names. They start with "_", which ValidateName refuses,
// and carry a random part so a crash or a retry can never collide.
const (
	internalPrefix     = "_"
	cloneSnapPrefix    = "_vc-" // the snapshot a clone of a volume is made from
	trashIDSeparator   = "_"
	datasetRoot        = "dots"
	datasetVolumes     = "volumes"
	datasetTrash       = "trash"
	datasetState       = "state"
	snapshotSeparator  = "@"
	internalRandomSize = 8
)

func isInternalSnapshot(snap string) bool {
	return strings.HasPrefix(snap, internalPrefix) && !hashedIDRE.MatchString(snap)
}

func internalName(prefix string) (string, error) {
	b := make([]byte, internalRandomSize)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random name: %w", err)
	}
	return prefix + hex.EncodeToString(b), nil
}

// trashName is the name a deleted volume with snapshots gets under
// POOL/dots/trash. The export id is unique among all datasets, so a volume
// created again under the same name and deleted again never collides.
func trashName(volume string, exportID uint32) string {
	return volume + trashIDSeparator + strconv.FormatUint(uint64(exportID), 10)
}

// splitSnapshot splits DATASET@SNAP.
func splitSnapshot(full string) (dataset, snap string, ok bool) {
	return strings.Cut(full, snapshotSeparator)
}

// lastComponent returns the part of a dataset name after the last "/".
func lastComponent(dataset string) string {
	if i := strings.LastIndexByte(dataset, '/'); i >= 0 {
		return dataset[i+1:]
	}
	return dataset
}
