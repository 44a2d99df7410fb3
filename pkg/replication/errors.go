package replication

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/api"
)

// Sentinel errors of replication beyond the contract's.
var (
	// ErrNoCopy: this server holds no copy of the volume.
	ErrNoCopy = errors.New("no copy of the volume on this server")
	// ErrNotConfirmed: a replicated primary whose replicas have not yet
	// confirmed that no newer generation exists is not served (the
	// start-up rule).
	ErrNotConfirmed = errors.New("replicated primary not yet confirmed by a replica")
	// ErrUnreachable: no replica answered.
	ErrUnreachable = errors.New("no replica answered")
)

// ErrorCodes are replication's rows of a server's error table.
var ErrorCodes = []api.ErrorCode{
	{Err: ErrNoCopy, Code: codes.NotFound},
	{Err: ErrNotConfirmed, Code: codes.Unavailable},
	{Err: ErrUnreachable, Code: codes.Unavailable},
}
