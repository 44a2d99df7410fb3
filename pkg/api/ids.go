package api

import (
	"fmt"
	"strings"
)

// MaxClusterIDLen bounds a cluster ID, the CSI volume and snapshot ID
// Kubernetes stores: the spec's 128 bytes.
const MaxClusterIDLen = 128

// FormatID makes the cluster ID of a volume or snapshot: SERVER/ID.
func FormatID(server, id string) string {
	return server + "/" + id
}

// ParseID splits a cluster ID into the server holding it and its ID there.
// Anything else wraps ErrMalformedID.
func ParseID(clusterID string) (server, id string, err error) {
	if len(clusterID) > MaxClusterIDLen {
		return "", "", fmt.Errorf("%w: %d bytes is longer than %d", ErrMalformedID, len(clusterID), MaxClusterIDLen)
	}
	server, id, ok := strings.Cut(clusterID, "/")
	if !ok {
		return "", "", fmt.Errorf("%w: %q has no server part", ErrMalformedID, clusterID)
	}
	if err := ValidateServerName(server); err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrMalformedID, clusterID, err)
	}
	if err := ValidateID(id); err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrMalformedID, clusterID, err)
	}
	return server, id, nil
}
