//go:build integration

// Package server runs csi-sanity against one storage server on its own: a
// server is a complete CSI controller for its pool (the cluster controller
// only routes between servers). The Node service comes from a node plugin
// in local-bind mode over the server's dataset mountpoints, whose kubelet
// directory is the test's directory (the staging and target paths are in it).
//
// Skips: the capabilities a server does not advertise (the list in
// test/sanity), and two node specs that want the Identity at the node
// endpoint to advertise the controller service, which a node plugin does
// not; they run in test/sanity against the whole local stack.
package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"google.golang.org/grpc"

	"github.com/dots-csi/dots/internal/serverenv"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/daemon"
	"github.com/dots-csi/dots/pkg/driver"
	"github.com/dots-csi/dots/pkg/mounter"
	"github.com/dots-csi/dots/pkg/server"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// run starts fn in the background and stops it at cleanup.
func run(t *testing.T, what string, fn func(ctx context.Context, ready func()) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- fn(ctx, func() { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", what, err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("%s did not start: %v", what, err)
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s not ready in 2 minutes", what)
	}
}

func TestServerSanity(t *testing.T) {
	dir := t.TempDir()
	srv := serverenv.Start(t, "dotss", "sanity-server", func(c *server.Config) {
		c.DefaultVolumeSize, c.PoolFileSize = "1Gi", "3Gi"
		c.NFS.MinorVersions = []int{1, 2}
	})
	mnt, api := srv.Config.MountRoot, srv.API
	nodeSock := "unix://" + filepath.Join(dir, "node.sock")
	run(t, "node plugin", func(ctx context.Context, ready func()) error {
		return driver.RunNode(ctx, driver.NodeConfig{Endpoint: nodeSock, HTTPAddress: "127.0.0.1:0",
			NodeOptions: driver.NodeOptions{NodeID: "sanity-node", Addresses: []string{"127.0.0.1"}, MountMode: mounter.ModeLocalBind,
				LocalBindRoots: []string{mounter.VolumesDir(mnt)}, KubeletDir: dir,
				StatsTimeout: mounter.DefaultStatTimeout, UnmountTimeout: mounter.DefaultUnmountTimeout}},
			func(daemon.Addrs) error { ready(); return nil })
	})

	sc := sanity.NewTestConfig()
	sc.Address = nodeSock
	sc.ControllerAddress = api
	// As the controller calls a server: mutual TLS with the test's CA.
	sc.ControllerDialOptions = []grpc.DialOption{grpc.WithTransportCredentials(testenv.ClientCreds(t))}
	sc.TargetPath = filepath.Join(dir, "target")
	sc.StagingPath = filepath.Join(dir, "staging")
	// Unaligned sizes, as in test/sanity: exact to the byte.
	sc.TestVolumeSize = 1<<30 + 1
	sc.TestVolumeExpandSize = 1<<30 + 123<<20 + 7
	// The ModifyVolume suite (and the CreateVolume specs with a
	// VolumeAttributesClass) apply these to real datasets.
	sc.TestVolumeMutableParameters = map[string]string{"compression": "gzip", "atime": "off"}
	sanity.Test(t, sc)
}
