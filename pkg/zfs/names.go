package zfs

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/dots-csi/dots/pkg/api"
)

// MaxPoolNameLen bounds pool names: with it, the longest full ZFS name dots
// builds from an ID (POOL/dots/trash/ID_EXPORTID@ID) stays well under ZFS's
// 255 bytes.
const MaxPoolNameLen = 32

var poolNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.:-]*$`)

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

func validateCapacity(c int64) error {
	if c < api.MinCapacity {
		return fmt.Errorf("%w: capacity %d is below the smallest volume, %d bytes", ErrInvalid, c, api.MinCapacity)
	}
	return nil
}

// Internal snapshot names. They start with "_", which api.ValidateName refuses,
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
	return strings.HasPrefix(snap, internalPrefix) && !api.IsHashedID(snap)
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
