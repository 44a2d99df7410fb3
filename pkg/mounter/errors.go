package mounter

import (
	"errors"
	"fmt"

	"github.com/dots-csi/dots/pkg/api"
)

// Sentinel errors returned (wrapped) by this package. Callers test them with
// errors.Is; only the gRPC layer turns them into status codes.
var (
	// ErrInvalidOption: a mount option is unknown, malformed, dangerous or
	// conflicts with another one.
	ErrInvalidOption = errors.New("invalid mount option")
	// ErrInvalidVolume: the volume description (address, port, export,
	// local path) is malformed.
	ErrInvalidVolume = errors.New("invalid volume source")
	// ErrNotFound: a path the operation needs does not exist.
	ErrNotFound = errors.New("path not found")
	// ErrNotMountPoint: a path that must be a mount point is not one.
	ErrNotMountPoint = errors.New("not a mount point")
	// ErrOutsideRoot: a local-bind source is not a volume, i.e. not directly
	// below one of the volumes directories the node may bind from. It is a
	// malformed request (api.ErrInvalid), like a host path outside the
	// kubelet directory.
	ErrOutsideRoot = fmt.Errorf("%w: local-bind source is not a volume of a storage server on this machine", api.ErrInvalid)
	// ErrMountConflict: something else, or the same volume with other
	// access (read-only vs read-write), is already mounted at the target.
	ErrMountConflict = errors.New("incompatible mount already present")
	// ErrStale: the mount does not answer sensibly (ESTALE, ENOTCONN, EIO).
	ErrStale = errors.New("stale mount")
	// ErrTimeout: a filesystem call did not return within its bound, which
	// on a hard NFS mount means the server is unreachable.
	ErrTimeout = errors.New("filesystem call timed out")
	// ErrBusy: the kernel refused to unmount because the mount is in use.
	ErrBusy = errors.New("mount is busy")
	// ErrNoServer: none of the servers a volume context lists serves the
	// volume (each was tried in turn; the error says why each failed).
	ErrNoServer = errors.New("no listed server serves the volume")
)

// ErrInvalidConfig: the mounter configuration is unusable.
var ErrInvalidConfig = errors.New("invalid mounter configuration")
