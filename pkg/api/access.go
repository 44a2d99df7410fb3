package api

import (
	"fmt"
	"io/fs"
	"strconv"
)

// Squash says which client users an export maps to its anonymous user.
type Squash string

const (
	// SquashDefault: the server's default (its --nfs-squash).
	SquashDefault Squash = ""
	SquashNone    Squash = "none" // ids are trusted as the node sends them
	SquashRoot    Squash = "root" // root becomes the anonymous user
	SquashAll     Squash = "all"  // every user becomes the anonymous user
)

// DefaultAnonID is the anonymous uid and gid: "nobody" on most systems.
const DefaultAnonID = 65534

// maxID keeps ids out of the range where -1 and "nobody" sentinels live.
const maxID = 1<<31 - 1

// Access is how a volume's export treats users, and who owns the root
// directory of a new, empty volume. The StorageClass parameters squash,
// anonUID, anonGID, uid, gid and mode.
type Access struct {
	Squash           Squash
	AnonUID, AnonGID uint32 // DefaultAnonID unless set
	// Root ownership of a new volume; nil fields take the defaults of
	// RootOwner.
	UID, GID *uint32
	Mode     *fs.FileMode
}

// Owner is the owner and permissions of a directory.
type Owner struct {
	UID, GID uint32
	Mode     fs.FileMode // permission and setgid/sticky bits
}

// RootOwner is who owns a new volume's root directory: the uid, gid and
// mode parameters, else root when root is trusted and the anonymous user
// when it is squashed (so a pod running as root can write). A gid given
// without a mode gets 2775: the group (a pod's fsGroup) may write and new
// files inherit it.
func (a Access) RootOwner(squash Squash) Owner {
	o := Owner{Mode: 0o755}
	if squash != SquashNone {
		o.UID, o.GID = a.AnonUID, a.AnonGID
	}
	if a.UID != nil {
		o.UID = *a.UID
	}
	if a.GID != nil {
		o.GID = *a.GID
		o.Mode = fs.ModeSetgid | 0o775
	}
	if a.Mode != nil {
		o.Mode = *a.Mode
	}
	return o
}

// parseSquash reads the squash parameter.
func parseSquash(v string) (Squash, error) {
	switch s := Squash(v); s {
	case SquashNone, SquashRoot, SquashAll:
		return s, nil
	}
	return "", fmt.Errorf("%w: parameter %s=%q: want none, root or all", ErrInvalid, ParamSquash, v)
}

// parseID reads a uid or gid parameter.
func parseID(k, v string) (uint32, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n > maxID {
		return 0, fmt.Errorf("%w: parameter %s=%q: want a number from 0 to %d", ErrInvalid, k, v, maxID)
	}
	return uint32(n), nil
}

// ParseMode reads an octal mode ("755", "2775"). World-writable modes are
// refused: every user of every node published the volume could write.
func ParseMode(v string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o7777 || len(v) > 5 {
		return 0, fmt.Errorf("%w: parameter %s=%q: want an octal mode such as 755 or 2775", ErrInvalid, ParamMode, v)
	}
	if n&0o002 != 0 {
		return 0, fmt.Errorf("%w: parameter %s=%q is world-writable; give the writers a group (gid) instead", ErrInvalid, ParamMode, v)
	}
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

// FormatMode is ParseMode's inverse: octal with the special bits.
func FormatMode(m fs.FileMode) string {
	n := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n |= 0o1000
	}
	return strconv.FormatUint(uint64(n), 8)
}
