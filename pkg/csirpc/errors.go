package csirpc

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorCode pairs a sentinel error with the gRPC code it means. It is an
// alias of an unnamed struct, so a package can write its rows without
// importing this one (pkg/api does).
type ErrorCode = struct {
	Err  error
	Code codes.Code
}

// Codes is a daemon's table of which error means which gRPC code. Backends
// return sentinel errors (wrapped with detail); only the interceptor turns
// them into status codes, through this table.
type Codes struct {
	rows []ErrorCode
}

// base rows hold for every daemon: the context's own errors and paging.
var base = []ErrorCode{
	{Err: ErrBadToken, Code: codes.Aborted},
	{Err: ErrBadMaxEntries, Code: codes.InvalidArgument},
	{Err: context.DeadlineExceeded, Code: codes.DeadlineExceeded},
	{Err: context.Canceled, Code: codes.Canceled},
}

// NewCodes joins tables in order; the first row whose error an error wraps
// decides its code.
func NewCodes(tables ...[]ErrorCode) Codes {
	var c Codes
	for _, t := range tables {
		c.rows = append(c.rows, t...)
	}
	c.rows = append(c.rows, base...)
	return c
}

// Status turns err into a gRPC status error. A status error passes through
// unchanged (a server's answer relayed by the controller keeps its code);
// errors no row matches become Internal.
func (c Codes) Status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, m := range c.rows {
		if errors.Is(err, m.Err) {
			return status.Error(m.Code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}
