package server

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/lockset"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/replication"
	"github.com/dots-csi/dots/pkg/zfs"
)

// Sentinel errors of the server's own checks.
var (
	// ErrOutsideClients: a node whose addresses the server's NFS client
	// networks do not hold; its export could never admit it.
	ErrOutsideClients = errors.New("node outside the NFS client networks")
	// ErrPublishedElsewhere: a single-node volume published to another
	// node.
	ErrPublishedElsewhere = errors.New("volume published to another node")
)

// ErrorCodes is a storage server's error table: which error of the pool,
// the NFS server or the contract means which gRPC code. The interceptor
// applies it to every answer; handlers return sentinel errors.
var ErrorCodes = csirpc.NewCodes(api.ErrorCodes, replication.ErrorCodes, []csirpc.ErrorCode{
	{Err: lockset.ErrBusy, Code: codes.Aborted},
	{Err: zfs.ErrNotFound, Code: codes.NotFound},
	{Err: zfs.ErrExists, Code: codes.AlreadyExists},
	{Err: zfs.ErrNoSpace, Code: codes.ResourceExhausted},
	{Err: zfs.ErrShrink, Code: codes.InvalidArgument},
	{Err: zfs.ErrTooSmall, Code: codes.OutOfRange},
	{Err: zfs.ErrBusy, Code: codes.Unavailable},
	{Err: zfs.ErrNotMounted, Code: codes.Unavailable},
	{Err: nfs.ErrInvalid, Code: codes.InvalidArgument},
	{Err: ErrOutsideClients, Code: codes.FailedPrecondition},
	{Err: ErrPublishedElsewhere, Code: codes.FailedPrecondition},
	{Err: errNoGroups, Code: codes.Unimplemented},
	{Err: api.ErrUnknownNode, Code: codes.NotFound},
	{Err: zfs.ErrTooManyNodes, Code: codes.ResourceExhausted},
	{Err: nfs.ErrUnavailable, Code: codes.Unavailable},
	// Fencing refusals, met when a server opens its pool.
	{Err: zfs.ErrPoolInUse, Code: codes.Unavailable},
	{Err: zfs.ErrPoolForeign, Code: codes.FailedPrecondition},
})
