//go:build integration

// Package sanity runs csi-sanity, the CSI conformance suite, in-process
// against the real thing: the local stack of `dots local` (two storage
// servers on zfs-fuse pools, each with its own NFS-Ganesha, the controller
// over them, and the node plugin in local-bind mode) behind one endpoint.
//
// Skips: none. The suite skips by itself only the tests of capabilities dots
// does not advertise:
//   - PUBLISH_UNPUBLISH_VOLUME, PUBLISH_READONLY: NFS needs no attach step.
//   - LIST_VOLUMES_PUBLISHED_NODES: follows from the above.
//   - GET_VOLUME_HEALTH / LIST_VOLUME_HEALTH (controller side): health is
//     reported by the node (VOLUME_CONDITION).
//   - NodeExpandVolume (EXPAND_VOLUME on the node): NFS clients see a
//     raised quota at once; no node step exists.
//   - NodeGetStorageHealth: not advertised (volume health is per volume).
//   - SNAPSHOT_ACCESSIBILITY_CONSTRAINTS: no topology, every node reaches
//     every server.
//   - Group snapshots: no GroupController service.
package sanity

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/local"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestSanity(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := local.Config{StateDir: filepath.Join(dir, "state"), Servers: 2, PoolSize: "3Gi", HTTPAddress: "127.0.0.1:0"}
	readyc := make(chan local.Info, 1)
	done := make(chan error, 1)
	go func() { done <- local.Run(ctx, cfg, func(i local.Info) { readyc <- i }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("local stack: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Error("local stack did not stop within 2 minutes")
		}
	})
	var info local.Info
	select {
	case info = <-readyc:
	case err := <-done:
		t.Fatalf("local stack failed to start: %v", err)
	case <-time.After(3 * time.Minute):
		t.Fatal("local stack not ready within 3 minutes")
	}

	sc := sanity.NewTestConfig()
	sc.Address = info.Endpoint
	// The stack's node takes its state dir for kubelet's.
	sc.TargetPath = filepath.Join(cfg.PodsDir(), "target")
	sc.StagingPath = filepath.Join(cfg.PodsDir(), "staging")
	// Unaligned sizes: csi-sanity expects exactly these capacities back,
	// and dots gives them, to the byte.
	sc.TestVolumeSize = 1<<30 + 1
	sc.TestVolumeExpandSize = 1<<30 + 123<<20 + 7
	// The ModifyVolume suite (and the CreateVolume specs with a
	// VolumeAttributesClass) apply these to real datasets.
	sc.TestVolumeMutableParameters = map[string]string{"compression": "gzip", "atime": "off"}
	sanity.Test(t, sc)
}
