package driver

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/lockset"
	"github.com/dots-csi/dots/pkg/mounter"
)

// The controller's own errors. A storage server's answers are relayed with
// their codes unchanged.
var (
	// errNotFound: the ID names a server this controller does not know,
	// so no such volume or snapshot can exist.
	errNotFound = errors.New("not found")
	// errUnavailable: no storage server could be asked.
	errUnavailable = errors.New("storage servers unavailable")
	// errNoRoom: no storage server has room for the volume.
	errNoRoom = errors.New("no storage server has room")
	// errExists: the name is taken on another server.
	errExists = errors.New("already exists")
	// errNotStaged: a publish without the staging this plugin requires.
	errNotStaged = errors.New("not staged")
	// errPublishDisabled: ControllerPublishVolume on a controller not
	// configured for it (--controller-publish).
	errPublishDisabled = errors.New("ControllerPublishVolume is not enabled on this controller (--controller-publish)")
)

var (
	common = []csirpc.ErrorCode{
		{Err: lockset.ErrBusy, Code: codes.Aborted},
		{Err: errNotFound, Code: codes.NotFound},
	}
	controllerRows = []csirpc.ErrorCode{
		{Err: errUnavailable, Code: codes.Unavailable},
		{Err: errNoRoom, Code: codes.ResourceExhausted},
		{Err: errExists, Code: codes.AlreadyExists},
		{Err: errSpansServers, Code: codes.FailedPrecondition},
		{Err: discovery.ErrInvalid, Code: codes.InvalidArgument},
		{Err: errPublishDisabled, Code: codes.Unimplemented},
		{Err: api.ErrUnknownNode, Code: codes.NotFound},
		{Err: errNotReplicated, Code: codes.FailedPrecondition},
		{Err: errNoReplication, Code: codes.FailedPrecondition},
	}
	nodeRows = []csirpc.ErrorCode{
		{Err: errNotStaged, Code: codes.FailedPrecondition},
		{Err: mounter.ErrInvalidOption, Code: codes.InvalidArgument},
		{Err: mounter.ErrInvalidVolume, Code: codes.InvalidArgument},
		{Err: mounter.ErrNotFound, Code: codes.NotFound},
		{Err: mounter.ErrOutsideRoot, Code: codes.InvalidArgument},
		{Err: mounter.ErrNotMountPoint, Code: codes.FailedPrecondition},
		{Err: mounter.ErrMountConflict, Code: codes.AlreadyExists},
		{Err: mounter.ErrBusy, Code: codes.FailedPrecondition},
		{Err: mounter.ErrStale, Code: codes.Unavailable},
		{Err: mounter.ErrTimeout, Code: codes.Unavailable},
		{Err: mounter.ErrGroupDenied, Code: codes.FailedPrecondition},
		{Err: mounter.ErrNoServer, Code: codes.Unavailable},
	}
)

// The error tables: which error means which gRPC code, for the controller,
// the node plugin, and the local stack's one endpoint serving both.
var (
	ControllerCodes = csirpc.NewCodes(api.ErrorCodes, common, controllerRows)
	NodeCodes       = csirpc.NewCodes(api.ErrorCodes, common, nodeRows)
	LocalCodes      = csirpc.NewCodes(api.ErrorCodes, common, controllerRows, nodeRows)
)
