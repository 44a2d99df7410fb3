//go:build integration

package zfs_test

import (
	"testing"

	"github.com/dots-csi/dots/internal/testenv"
)

// TestMain runs the integration tests against real zfs-fuse pools.
func TestMain(m *testing.M) { testenv.Main(m) }
