//go:build integration

package server

import (
	"testing"

	"github.com/dots-csi/dots/internal/testenv"
)

// TestMain prepares zfs-fuse for the integration tests.
func TestMain(m *testing.M) { testenv.Main(m) }
