//go:build integration

package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// stack is one real storage server and the controller over it, each its
// own process (the `dots` binary, as in a cluster), on a fresh pool.
type stack struct {
	t          *testing.T
	dir        string
	pool       testenv.TestPool
	server     *proc
	controller *proc
	srv        csi.ControllerClient // the server's API, over mutual TLS
	ctl        csi.ControllerClient // the controller's CSI socket
	nfs        libnfs.Client        // NFSv3 to the server's ganesha
}

const serverName = "bench-0"

// startStack makes a pool of poolSize and starts `dots server` on it
// (NFSv3 and v4, open to 127.0.0.0/8, no squashing) and `dots controller`
// over it (placements in a directory, as `dots local` keeps them).
func startStack(t *testing.T, poolSize string) *stack {
	t.Helper()
	testenv.EnsureRpcbind(t) // NFSv3 registers with it
	t0 := time.Now()
	defer func() {
		t.Logf("stack (pool of %s, server, controller) started in %s", poolSize, time.Since(t0).Round(time.Millisecond))
	}()
	s := &stack{t: t, dir: t.TempDir(), pool: testenv.NewTestPool(t, poolPrefix())}
	ports := testenv.FreeTCPPorts(t, 4)
	api := "127.0.0.1:" + strconv.Itoa(ports[0])
	s.nfs = libnfs.Client{Host: "127.0.0.1", Port: ports[2], MountPort: ports[3], Version: 3}
	conn, err := grpc.NewClient("passthrough:///"+api, grpc.WithTransportCredentials(testenv.ClientCreds(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s.srv = csi.NewControllerClient(conn)
	ids := csi.NewIdentityClient(conn)
	args := []string{"server", "--name", serverName, "--endpoint", "tcp://" + api, "--http-address", "127.0.0.1:" + strconv.Itoa(ports[1]),
		"--run-dir", filepath.Join(s.pool.Dir, "run"), "--pool", s.pool.Name, "--vdev", s.pool.Vdev, "--create-pool", "--pool-file-size", poolSize,
		"--mount-root", s.pool.Mountpoint, "--nfs-port", strconv.Itoa(ports[2]), "--nfs-mount-port", strconv.Itoa(ports[3]),
		"--nfs-protocols", "3,4", "--nfs-minor-versions", "0,1,2", "--nfs-bind-address", "127.0.0.1", "--nfs-clients", "127.0.0.0/8",
		"--export-access", "clients", "--nfs-squash", "no_root_squash", "--nfs-grace-period", "2s", "--nfs-lease-lifetime", "2s",
		"--default-volume-size", "16Mi"}
	t.Logf("pool and ports after %s", time.Since(t0).Round(time.Millisecond))
	s.server = startProc(t, s.dir, "server", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := ids.Probe(ctx, &csi.ProbeRequest{})
		return err
	}, append(args, testenv.ServerTLSFlags(t)...)...)

	t.Logf("server started after %s", time.Since(t0).Round(time.Millisecond))
	sock := filepath.Join(s.dir, "csi.sock")
	cconn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cconn.Close() })
	s.ctl = csi.NewControllerClient(cconn)
	cids := csi.NewIdentityClient(cconn)
	o := testenv.PKI(t).ClientOptions()
	s.controller = startProc(t, s.dir, "controller", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cids.Probe(ctx, &csi.ProbeRequest{})
		return err
	}, "controller", "--endpoint", "unix://"+sock, "--http-address", "127.0.0.1:0",
		"--server", fmt.Sprintf("name=%s,api=%s,nfs=127.0.0.1,nfs-port=%d", serverName, api, ports[2]),
		"--placements", "dir:"+filepath.Join(s.dir, "placements"),
		"--tls-cert-file", o.CertFile, "--tls-key-file", o.KeyFile, "--tls-ca-file", o.CAFile)
	return s
}

// zfs runs a zfs command as the raw baseline does: the same seam and
// deadlines as the server's.
func zfsRun(ctx context.Context, t testing.TB, args ...string) (string, error) {
	out, err := testenv.Runner(t).Run(ctx, command.Z(args...))
	return strings.TrimSpace(string(out)), err
}

// ganeshaRSS is the resident memory of the NFS server the storage server
// supervises (found by its configuration under the server's run dir).
func (s *stack) ganeshaRSS() (memory, error) {
	run := filepath.Join(s.pool.Dir, "run")
	for _, p := range testenv.GaneshaProcesses() {
		for i, a := range p.Args {
			if a == "-f" && i+1 < len(p.Args) && strings.HasPrefix(p.Args[i+1], run) {
				return memOf(p.PID)
			}
		}
	}
	return memory{}, fmt.Errorf("no ganesha runs under %s", run)
}
