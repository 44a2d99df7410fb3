package api

import (
	"errors"

	"google.golang.org/grpc/codes"
)

// Sentinel errors of the contract. Callers wrap them with detail; the gRPC
// layer maps them with ErrorCodes.
var (
	// ErrInvalid is a malformed request: a bad name, parameter or field.
	ErrInvalid = errors.New("invalid argument")
	// ErrOutOfRange is a size the request's range or the volume's state
	// cannot satisfy.
	ErrOutOfRange = errors.New("out of range")
	// ErrUnsupported is a volume capability dots cannot serve.
	ErrUnsupported = errors.New("unsupported volume capability")
	// ErrMalformedID is an ID no volume or snapshot can have: for the
	// caller, nothing by that ID exists.
	ErrMalformedID = errors.New("malformed id")
	// ErrNotReady is a Probe of a daemon that cannot serve yet.
	ErrNotReady = errors.New("not ready")
	// ErrStaleGeneration is a copy of a volume, or a stream from one, older
	// than a generation the answering server holds: it must not serve.
	ErrStaleGeneration = errors.New("stale generation")
	// ErrNotReplica is a replica-only operation on a primary (or on a
	// server holding no copy).
	ErrNotReplica = errors.New("not a replica")
	// ErrNotPrimary is a primary-only operation on a server that holds no
	// primary copy of the volume.
	ErrNotPrimary = errors.New("not the primary")
)

// ErrorCode pairs a sentinel error with the gRPC code it means. It is an
// alias of an unnamed struct, so tables written in different packages (see
// csirpc.NewCodes) have one type without those packages importing each
// other.
type ErrorCode = struct {
	Err  error
	Code codes.Code
}

// ErrorCodes is the contract's part of every daemon's error table.
var ErrorCodes = []ErrorCode{
	{Err: ErrInvalid, Code: codes.InvalidArgument},
	{Err: ErrUnsupported, Code: codes.InvalidArgument},
	{Err: ErrOutOfRange, Code: codes.OutOfRange},
	{Err: ErrMalformedID, Code: codes.NotFound},
	{Err: ErrNotReady, Code: codes.FailedPrecondition},
	{Err: ErrStaleGeneration, Code: codes.FailedPrecondition},
	{Err: ErrNotReplica, Code: codes.FailedPrecondition},
	{Err: ErrNotPrimary, Code: codes.FailedPrecondition},
}
