package api

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// MaxNameLen bounds the names of CSI requests (the spec's 128 bytes).
// MaxIDLen bounds IDs, the names volumes and snapshots have on a server:
// short enough that the longest ZFS name a server builds from one stays
// well under ZFS's 255 bytes.
const (
	MaxNameLen = 128
	MaxIDLen   = 63
)

// hashedIDPrefix starts the ID of a name longer than MaxIDLen; request names
// cannot start with "_", so hashed and plain IDs never collide.
const hashedIDPrefix = "_h"

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)
	hashedIDRE = regexp.MustCompile(`^_h[0-9a-f]{40}$`)
)

// IDFor returns the ID of a valid volume or snapshot name: the name itself
// when it is at most MaxIDLen long (readable in `zfs list`), otherwise "_h"
// and 160 bits of its SHA-256. The mapping is deterministic, so a repeated
// CreateVolume finds what the first one made.
func IDFor(name string) string {
	if len(name) <= MaxIDLen {
		return name
	}
	return hashedID(name)
}

func hashedID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hashedIDPrefix + hex.EncodeToString(sum[:20])
}

// IsHashedID reports an ID made by IDFor from a long name.
func IsHashedID(id string) bool { return hashedIDRE.MatchString(id) }

// ValidateID checks an ID: a valid name of at most MaxIDLen, or a hashed ID.
func ValidateID(id string) error {
	if IsHashedID(id) {
		return nil
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%w: id is %d characters, at most %d allowed", ErrInvalid, len(id), MaxIDLen)
	}
	return ValidateName(id)
}

// ValidateName checks a volume or snapshot name of a request. Names start
// with a letter or digit, so every internal name a server makes (they start
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
