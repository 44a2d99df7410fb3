package zfs

import "errors"

// Sentinel errors. Callers test them with errors.Is; only the gRPC layer
// turns them into status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid argument")
	ErrNoSpace  = errors.New("not enough space in the pool")
	ErrShrink   = errors.New("volumes cannot shrink")
	ErrTooSmall = errors.New("smaller than its source")
	ErrBusy     = errors.New("dataset is busy")
)
