// Package volumeid encodes the cluster-wide IDs of volumes and snapshots:
// "SERVER/ID", the storage server that holds the dataset and its ID there
// (zfs.IDFor of the request's name). IDs are stored in every PV and VolumeSnapshotContent, so the
// format never changes.
package volumeid

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/zfs"
)

// ErrMalformed reports an ID that dots never issued.
var ErrMalformed = errors.New("malformed id")

// MaxLength is CSI's recommended bound on IDs.
const MaxLength = 128

// Format returns the ID of name on server.
func Format(server, name string) string {
	return server + "/" + name
}

// Parse splits an ID into server and name, validating both.
func Parse(id string) (server, name string, err error) {
	if len(id) > MaxLength {
		return "", "", fmt.Errorf("%w: %d bytes is longer than %d", ErrMalformed, len(id), MaxLength)
	}
	server, name, ok := strings.Cut(id, "/")
	if !ok {
		return "", "", fmt.Errorf("%w: %q has no server part", ErrMalformed, id)
	}
	if err := discovery.ValidateName(server); err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrMalformed, id, err)
	}
	if err := zfs.ValidateID(name); err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrMalformed, id, err)
	}
	return server, name, nil
}
