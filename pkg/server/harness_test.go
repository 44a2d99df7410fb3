//go:build integration

package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// poolPrefix names this package's test pools.
const poolPrefix = "dotss"

// testServer is a real storage server (zfs-fuse pool on a sparse file,
// supervised ganesha) run in this process through Run, and a CSI client
// dialled at its gRPC endpoint as the cluster controller does.
type testServer struct {
	t      *testing.T
	cfg    Config
	cancel context.CancelFunc
	done   chan error
	conn   *grpc.ClientConn
	http   string // its /metrics, once started
	ctrl   csi.ControllerClient
	ident  csi.IdentityClient
	nfs    libnfs.Client
}

// startTestServer creates a test pool and runs a server on it serving
// NFSv3 and NFSv4 (minor 0, 1, 2) to 127.0.0.0/8 on free ports. The server
// is stopped and the pool destroyed in t.Cleanup. opts change the
// configuration before it starts.
func startTestServer(t *testing.T, opts ...func(*Config)) *testServer {
	t.Helper()
	return startTestServerPrefix(t, poolPrefix, opts...)
}

// startTestServerPrefix is startTestServer on a pool named with prefix.
func startTestServerPrefix(t *testing.T, prefix string, opts ...func(*Config)) *testServer {
	t.Helper()
	testenv.EnsureRpcbind(t) // NFSv3 registers with it
	// Registered first, so the pool is destroyed after the server stops.
	tp := testenv.NewTestPool(t, prefix)
	ports := testenv.FreeTCPPorts(t, 2)
	s := &testServer{t: t, cfg: Config{
		Name:              "srv-" + tp.Name[len(tp.Name)-8:],
		Endpoint:          "tcp://127.0.0.1:0",
		HTTPAddress:       "127.0.0.1:0",
		RunDir:            filepath.Join(tp.Dir, "run"),
		DefaultVolumeSize: "64Mi",
		Pool:              tp.Name,
		Vdevs:             []string{tp.Vdev},
		CreatePool:        true,
		PoolFileSize:      "1Gi",
		MountRoot:         tp.Mountpoint,
		ZFSCLI:            string(zfs.CLIAuto),
		ZFSBinary:         command.ZFS,
		ZpoolBinary:       command.Zpool,
		ZFSTimeouts:       testenv.Timeouts(),
		ExportOnExit:      true,
		// Tests through this harness read and write without publishing;
		// per-node exports have tests of their own.
		ExportAccess: string(AccessClients),
		TLS:          testenv.PKI(t).ServerOptions(),
		NFS: nfs.GaneshaConfig{
			NFSPort: ports[0], MountPort: ports[1], BindAddr: "127.0.0.1",
			Protocols: []int{3, 4}, MinorVersions: []int{0, 1, 2},
			Clients: []string{"127.0.0.0/8"},
			// libnfs writes as root: without this, root becomes nobody,
			// who may not write into the dataset's root directory.
			Squash: nfs.SquashNone,
			// libnfs never reclaims, so keep the grace after a restart short.
			GracePeriod: 2 * time.Second, LeaseLifetime: 2 * time.Second,
			RestartDelay: 50 * time.Millisecond,
			// As --nfs-dbus defaults: export changes over the private bus.
			DBus: nfs.DBusAuto,
		},
	}}
	s.nfs = libnfs.Client{Host: "127.0.0.1", Port: ports[0], MountPort: ports[1], Version: 3}
	for _, o := range opts {
		o(&s.cfg)
	}
	t.Cleanup(s.stop)
	s.start()
	return s
}

// start runs the server and dials it; it returns once the server is ready.
func (s *testServer) start() {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan Running, 1)
	go func() { done <- Run(ctx, s.cfg, func(r Running) { ready <- r }) }()
	var r Running
	select {
	case r = <-ready:
	case err := <-done:
		cancel()
		s.t.Fatalf("server did not start: %v", err)
	case <-time.After(2 * time.Minute):
		cancel()
		s.t.Fatal("server not ready within 2 minutes")
	}
	s.cancel, s.done, s.http = cancel, done, r.HTTP
	target, err := csirpc.DialTarget("tcp://" + r.Endpoint)
	if err != nil {
		s.t.Fatal(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(testenv.ClientCreds(s.t)))
	if err != nil {
		s.t.Fatal(err)
	}
	s.conn, s.ctrl, s.ident = conn, csi.NewControllerClient(conn), csi.NewIdentityClient(conn)
}

// stop cancels Run and waits for it: API, ganesha, then the pool export.
func (s *testServer) stop() {
	if s.cancel == nil {
		return
	}
	if s.conn != nil {
		_ = s.conn.Close()
	}
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("server stopped with: %v", err)
		}
	case <-time.After(2 * time.Minute):
		s.t.Error("server did not stop within 2 minutes")
	}
	s.cancel = nil
}

// datasets lists every dataset and snapshot below dataset (inclusive).
func (s *testServer) datasets(ctx context.Context, dataset string) []string {
	s.t.Helper()
	return strings.Fields(testenv.Zfs(s.t, "list", "-H", "-o", "name", "-t", "all", "-r", dataset))
}

// volumeDatasets lists the names of the datasets (not snapshots) directly
// under POOL/dots/volumes.
func (s *testServer) volumeDatasets(ctx context.Context) []string {
	s.t.Helper()
	prefix := s.cfg.Pool + "/dots/volumes/"
	var out []string
	for _, d := range s.datasets(ctx, s.cfg.Pool+"/dots/volumes") {
		if rest, ok := strings.CutPrefix(d, prefix); ok && !strings.ContainsAny(rest, "@/") {
			out = append(out, rest)
		}
	}
	slices.Sort(out)
	return out
}

// ganeshaPids finds the ganesha.nfsd processes whose command line names a
// file in this server's run directory.
func (s *testServer) ganeshaPids() []int {
	var pids []int
	for _, p := range testenv.GaneshaProcesses() {
		if slices.ContainsFunc(p.Args, func(a string) bool { return strings.HasPrefix(a, s.cfg.RunDir+"/") }) && processAlive(p.PID) {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// processAlive is false for gone and zombie processes.
func processAlive(pid int) bool {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	st := string(raw)
	i := strings.LastIndexByte(st, ')')
	return i < 0 || i+2 >= len(st) || st[i+2] != 'Z'
}

// mustCreate creates a volume and returns it.
func (s *testServer) mustCreate(ctx context.Context, req *csi.CreateVolumeRequest) *csi.Volume {
	s.t.Helper()
	resp, err := s.ctrl.CreateVolume(ctx, req)
	if err != nil {
		s.t.Fatalf("CreateVolume %q: %v", req.GetName(), err)
	}
	v := resp.GetVolume()
	if v.GetVolumeContext()[api.ContextExport] == "" {
		s.t.Fatalf("CreateVolume %q: no export in the volume context %v", req.GetName(), v.GetVolumeContext())
	}
	return v
}

// listVolumes returns every volume by id, through all pages.
func (s *testServer) listVolumes(ctx context.Context) map[string]*csi.Volume {
	s.t.Helper()
	out := map[string]*csi.Volume{}
	token := ""
	for {
		resp, err := s.ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token})
		if err != nil {
			s.t.Fatalf("ListVolumes: %v", err)
		}
		for _, e := range resp.GetEntries() {
			out[e.GetVolume().GetVolumeId()] = e.GetVolume()
		}
		if token = resp.GetNextToken(); token == "" {
			return out
		}
	}
}

// readNFS reads a file through the export, retrying briefly while the NFS
// server is (re)starting or in its grace period.
func (s *testServer) readNFS(ctx context.Context, export, file string) ([]byte, error) {
	var data []byte
	var last error
	_ = poll.Wait(30*time.Second, func() error {
		data, last = s.nfs.ReadFile(ctx, export, file)
		if errors.Is(last, libnfs.ErrNotFound) {
			return nil // an answer, not an outage
		}
		return last
	})
	return data, last
}

// mustRead reads a file through NFS and compares it with want.
func (s *testServer) mustRead(ctx context.Context, export, file string, want []byte) {
	s.t.Helper()
	got, err := s.readNFS(ctx, export, file)
	if err != nil {
		s.t.Fatalf("reading %s%s through NFS: %v", export, "/"+file, err)
	}
	if !bytes.Equal(got, want) {
		s.t.Fatalf("%s/%s through NFS: %d bytes, want %d bytes (%q...)", export, file, len(got), len(want), head(got))
	}
}

func (s *testServer) mustWrite(ctx context.Context, export, file string, data []byte) {
	s.t.Helper()
	if err := s.nfs.WriteFile(ctx, export, file, data); err != nil {
		s.t.Fatalf("writing %s/%s (%d bytes) through NFS: %v", export, file, len(data), err)
	}
}

func head(b []byte) []byte { return b[:min(len(b), 32)] }

func randomBytes(t *testing.T, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
