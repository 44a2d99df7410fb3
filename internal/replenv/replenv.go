// Package replenv runs storage servers as real `dots server` processes
// (each on its own zfs-fuse test pool, with its own NFS-Ganesha serving
// NFSv3 and v4 on fixed ports) for the tests of replicas: a server can be
// stopped, SIGKILLed, started again on its pool, or lose its pool, and the
// tests drive it as the controller does: CSI for volumes, the replication
// service (pkg/replication's Client) for replicas and promotions.
package replenv

import (
	"context"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/replication"
	"github.com/dots-csi/dots/pkg/zfs"
)

// Server is one `dots server` process and its pool.
type Server struct {
	t    testing.TB
	Name string
	Pool testenv.TestPool
	// API is the gRPC endpoint (host:port), HTTP its /metrics and /readyz.
	API, HTTP          string
	NFSPort, MountPort int
	args               []string

	mu   sync.Mutex
	proc *testenv.ServerProcess
	conn *grpc.ClientConn
}

// Start makes a test pool (prefix, e.g. "dotsrs") and starts a server
// named name on it, open to 127.0.0.0/8 over NFSv3 and v4, squashing
// nobody (libnfs writes as root), with extra `dots server` flags. It is
// stopped and its pool destroyed when the test ends.
func Start(t testing.TB, prefix, name string, extra ...string) *Server {
	t.Helper()
	testenv.EnsureRpcbind(t) // libnfs writes data over NFSv3
	tp := testenv.NewTestPool(t, prefix)
	ports := testenv.FreeTCPPorts(t, 4)
	s := &Server{t: t, Name: name, Pool: tp, API: "127.0.0.1:" + strconv.Itoa(ports[0]),
		HTTP: "127.0.0.1:" + strconv.Itoa(ports[1]), NFSPort: ports[2], MountPort: ports[3]}
	s.args = append([]string{"server", "--name", name, "--endpoint", "tcp://" + s.API, "--http-address", s.HTTP,
		"--run-dir", tp.Dir + "/run", "--pool", tp.Name, "--vdev", tp.Vdev, "--create-pool", "--pool-file-size", "1Gi",
		"--mount-root", tp.Mountpoint, "--nfs-port", strconv.Itoa(s.NFSPort), "--nfs-mount-port", strconv.Itoa(s.MountPort),
		"--nfs-protocols", "3,4", "--nfs-minor-versions", "0,1,2", "--nfs-bind-address", "127.0.0.1",
		"--nfs-clients", "127.0.0.0/8", "--export-access", "clients", "--nfs-squash", "no_root_squash",
		"--nfs-grace-period", "2s", "--nfs-lease-lifetime", "2s", "--default-volume-size", "64Mi",
		"--reconcile-interval", "5s", "--export-pool-on-exit=false"}, extra...)
	s.args = append(s.args, testenv.ServerTLSFlags(t)...)
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			s.KeepLog()
		}
		s.mu.Lock()
		if s.conn != nil {
			_ = s.conn.Close()
		}
		s.mu.Unlock()
	})
	s.Start()
	return s
}

func (s *Server) logPath() string { return filepath.Join(s.Pool.Dir, "server.log") }

// Start runs the server process (again) and returns once it serves.
// NFSv3 servers registering with rpcbind at the same moment race, so a
// test starts its servers in turn.
func (s *Server) Start() {
	s.t.Helper()
	proc := testenv.StartServerProcess(s.t, s.Name, s.args, s.logPath(), s.KeepLog)
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	proc := s.proc
	s.proc = nil
	s.mu.Unlock()
	if proc != nil {
		proc.Stop(sig)
	}
}

// Stop stops the server (SIGTERM) and waits for it; its pool stays
// imported, as a stopped pod's would on its node.
func (s *Server) Stop() {
	start := time.Now()
	s.signal(syscall.SIGTERM)
	if d := time.Since(start); d > 5*time.Second {
		s.t.Logf("server %s took %s to stop", s.Name, d.Round(time.Millisecond))
	}
}

// Kill SIGKILLs the server and waits for it: nothing of it cleans up (its
// zfs commands and NFS server die with it, by their parent-death signal).
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Running says whether the server process runs.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// DestroyPool destroys the stopped server's pool: its PV is lost.
func (s *Server) DestroyPool() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := zfs.DestroyImportedPool(ctx, testenv.Runner(s.t), s.Pool.Name); err != nil {
		s.t.Fatalf("destroying pool %s: %v", s.Pool.Name, err)
	}
}

// KeepLog shows the end of the server's log in the test's output.
func (s *Server) KeepLog() { testenv.KeepLog(s.t, "dots-replicas", s.Name, s.logPath(), 40) }

func (s *Server) dial() *grpc.ClientConn {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		conn, err := grpc.NewClient("passthrough:///"+s.API, grpc.WithTransportCredentials(testenv.ClientCreds(s.t)))
		if err != nil {
			s.t.Fatal(err)
		}
		s.conn = conn
	}
	return s.conn
}

// CSI is the server's Controller service, dialled as the controller does
// (mutual TLS with the controller's certificate of the test's CA).
func (s *Server) CSI() csi.ControllerClient { return csi.NewControllerClient(s.dial()) }

// Identity is the server's Identity service.
func (s *Server) Identity() csi.IdentityClient { return csi.NewIdentityClient(s.dial()) }

// Replication is the server's replication service, as the controller
// calls it.
func (s *Server) Replication() *replication.Client { return replication.NewClient(s.dial()) }

// Discovery describes the server to a controller (its datasets are on
// this machine: local paths).
func (s *Server) Discovery() discovery.Server {
	return discovery.Server{Name: s.Name, APIAddress: s.API, NFSAddress: "127.0.0.1", NFSPort: s.NFSPort, LocalPaths: true}
}

// Peer is the server as another server dials it.
func (s *Server) Peer() api.Peer { return api.Peer{Server: s.Name, Address: s.API} }

// NFS is a client of the server's NFS server (NFSv3: libnfs writes data
// only over v3 on zfs-fuse).
func (s *Server) NFS() libnfs.Client {
	return libnfs.Client{Host: "127.0.0.1", Port: s.NFSPort, MountPort: s.MountPort, Version: 3}
}

// Dataset is the full name of a dataset of the server's pool under dots/
// (e.g. "replicas/NAME").
func (s *Server) Dataset(rel string) string { return s.Pool.Name + "/dots/" + rel }

// Metrics is the server's /metrics text.
func (s *Server) Metrics(t testing.TB) string { return testenv.Metrics(t, s.HTTP) }

// CreateVolume creates a volume of size bytes through CSI and returns its
// NFS export path.
func (s *Server) CreateVolume(t testing.TB, name string, size int64, params map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := s.CSI().CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: params,
		CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}})
	if err != nil {
		t.Fatalf("creating %s on %s: %v", name, s.Name, err)
	}
	return resp.GetVolume().GetVolumeContext()[api.ContextExport]
}

// Exported lists the pseudo paths the server's NFS server exports now.
func (s *Server) Exported(t testing.TB) map[string]bool {
	t.Helper()
	return testenv.ExportedPseudos(t, s.Pool.Dir+"/run")
}
