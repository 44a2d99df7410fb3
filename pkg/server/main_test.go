//go:build integration

package server

import (
	"testing"

	"github.com/dots-csi/dots/internal/testenv"
)

// TestMain prepares zfs-fuse for the integration tests; the test binary
// doubles as the go-zfs compatibility shim that server.Run enables.
func TestMain(m *testing.M) { testenv.Main(m) }
