package csirpc

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/capability"
	"github.com/dots-csi/dots/pkg/capacity"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/mounter"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/params"
	"github.com/dots-csi/dots/pkg/volumeid"
	"github.com/dots-csi/dots/pkg/zfs"
)

// codeOf lists, in one place, which backend error means which gRPC code.
var codeOf = []struct {
	err  error
	code codes.Code
}{
	{zfs.ErrNotFound, codes.NotFound},
	{zfs.ErrExists, codes.AlreadyExists},
	{zfs.ErrInvalid, codes.InvalidArgument},
	{zfs.ErrNoSpace, codes.ResourceExhausted},
	{zfs.ErrShrink, codes.InvalidArgument},
	{zfs.ErrTooSmall, codes.OutOfRange},
	{zfs.ErrBusy, codes.Unavailable},
	{nfs.ErrInvalid, codes.InvalidArgument},
	{nfs.ErrUnavailable, codes.Unavailable},
	{capability.ErrUnsupported, codes.InvalidArgument},
	{capacity.ErrInvalid, codes.InvalidArgument},
	{capacity.ErrOutOfRange, codes.OutOfRange},
	{params.ErrInvalid, codes.InvalidArgument},
	{mounter.ErrInvalidOption, codes.InvalidArgument},
	{mounter.ErrInvalidVolume, codes.InvalidArgument},
	{mounter.ErrNotFound, codes.NotFound},
	{mounter.ErrOutsideRoot, codes.FailedPrecondition},
	{mounter.ErrNotMountPoint, codes.FailedPrecondition},
	{mounter.ErrMountConflict, codes.AlreadyExists},
	{mounter.ErrBusy, codes.FailedPrecondition},
	{mounter.ErrStale, codes.Unavailable},
	{mounter.ErrTimeout, codes.Unavailable},
	{volumeid.ErrMalformed, codes.NotFound},
	{discovery.ErrInvalid, codes.InvalidArgument},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// ToStatus turns err into a gRPC status error. A status error passes through
// unchanged (a server's answer relayed by the controller keeps its code);
// unknown errors become Internal.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, m := range codeOf {
		if errors.Is(err, m.err) {
			return status.Error(m.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}
