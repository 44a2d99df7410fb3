package zfs

import (
	"errors"

	"github.com/dots-csi/dots/pkg/api"
)

// Sentinel errors. Callers test them with errors.Is; only the gRPC layer
// turns them into status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrInvalid is the contract's: names and IDs are checked by its rules.
	ErrInvalid  = api.ErrInvalid
	ErrNoSpace  = errors.New("not enough space in the pool")
	ErrShrink   = errors.New("volumes cannot shrink")
	ErrTooSmall = errors.New("smaller than its source")
	ErrBusy     = errors.New("dataset is busy")
	// ErrNotMounted: a volume's dataset is not mounted and cannot be now;
	// it is not exported until it is.
	ErrNotMounted = errors.New("volume not mounted")
	// ErrPoolInUse: another host still writes the pool (multihost's
	// activity check saw it) or another server on this host serves it.
	// Never forced.
	ErrPoolInUse = errors.New("pool in use by another host or server")
	// ErrPoolForeign: the pool was last imported by another host and not
	// exported, and nothing proves that host gone (see fence.go).
	ErrPoolForeign = errors.New("pool last used by another host and not exported")
)
