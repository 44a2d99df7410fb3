// Package serverenv runs real storage servers (a zfs-fuse pool, a
// supervised NFS-Ganesha) inside a test process, restartable on the same
// pool, for the tests of everything built on top of a server: the
// controller, csi-sanity, fault injection. pkg/server's own tests have
// their own harness (they cannot import this package).
package serverenv

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/server"
	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
	"google.golang.org/grpc"
)

// Server is a storage server a test runs.
type Server struct {
	t      testing.TB
	Config server.Config
	Pool   testenv.TestPool
	API    string // host:port of its gRPC endpoint
	HTTP   string // host:port of its /readyz and /metrics, once started
	cancel context.CancelFunc
	done   chan error
}

// Options adjust a server's configuration before it starts.
type Options func(*server.Config)

// Start makes a test pool (prefix, e.g. "dotsc") and starts a server named
// name on it: NFSv4 on a free port, open to 127.0.0.0/8. It is stopped and
// its pool destroyed when the test ends.
func Start(t testing.TB, prefix, name string, opts ...Options) *Server {
	t.Helper()
	tp := testenv.NewTestPool(t, prefix)
	ports := testenv.FreeTCPPorts(t, 2)
	s := &Server{t: t, Pool: tp, API: "127.0.0.1:" + strconv.Itoa(ports[0])}
	s.Config = server.Config{
		Name: name, Endpoint: "tcp://" + s.API, HTTPAddress: "127.0.0.1:0", RunDir: tp.Dir + "/run",
		DefaultVolumeSize: "64Mi", Pool: tp.Name, Vdevs: []string{tp.Vdev}, CreatePool: true,
		PoolFileSize: "1Gi", MountRoot: tp.Mountpoint, ZFSCLI: string(zfs.CLIAuto),
		ZFSBinary: command.ZFS, ZpoolBinary: command.Zpool, ZFSTimeouts: testenv.Timeouts(),
		// Tests through this harness read and write without publishing;
		// per-node exports have tests of their own.
		ExportAccess: string(server.AccessClients),
		NFS: nfs.GaneshaConfig{NFSPort: ports[1], BindAddr: "127.0.0.1", Protocols: []int{4},
			MinorVersions: []int{0, 1, 2}, Clients: []string{"127.0.0.0/8"}},
		TLS: testenv.PKI(t).ServerOptions(), // the test's CA: testenv.ClientCreds dials it
	}
	for _, o := range opts {
		o(&s.Config)
	}
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// Start runs the server; it returns once the server serves.
func (s *Server) Start() {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		s.done <- server.Run(ctx, s.Config, func(r server.Running) {
			s.HTTP = r.HTTP
			close(ready)
		})
	}()
	select {
	case <-ready:
	case err := <-s.done:
		cancel()
		s.cancel = nil
		s.t.Fatalf("server %s did not start: %v", s.Config.Name, err)
	case <-time.After(2 * time.Minute):
		s.t.Fatalf("server %s not ready in 2 minutes", s.Config.Name)
	}
}

// Stop stops the server (it exports its pool when so configured) and waits
// for it.
func (s *Server) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Errorf("server %s: %v", s.Config.Name, err)
	}
	s.cancel = nil
}

// Client dials the server's gRPC endpoint as the controller does (mutual
// TLS with the test's controller certificate); the connection is closed
// when the test ends.
func (s *Server) Client() (csi.ControllerClient, csi.IdentityClient) {
	s.t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+s.API, grpc.WithTransportCredentials(testenv.ClientCreds(s.t)))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = conn.Close() })
	return csi.NewControllerClient(conn), csi.NewIdentityClient(conn)
}

// Discovery describes the server to a controller.
func (s *Server) Discovery() discovery.Server {
	return discovery.Server{Name: s.Config.Name, APIAddress: s.API, NFSAddress: "127.0.0.1", NFSPort: s.Config.NFS.NFSPort}
}

// ExportedPseudos lists what the server's NFS server exports.
func (s *Server) ExportedPseudos(t testing.TB) map[string]bool {
	t.Helper()
	return testenv.ExportedPseudos(t, s.Config.RunDir)
}

// Metrics returns the server's /metrics text.
func (s *Server) Metrics(t testing.TB) string {
	t.Helper()
	return testenv.Metrics(t, s.HTTP)
}
