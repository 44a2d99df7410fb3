//go:build integration

// Package tls tests mutual TLS against a real storage server process (the
// dots binary on a zfs-fuse pool with NFS-Ganesha): who is refused, that a
// refused client changes nothing on the pool, how each refusal is counted
// on /metrics, and certificate rotation on both sides without a restart.
package tls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/mtls"
	"github.com/dots-csi/dots/pkg/registry"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// server is one `dots server` process serving mutual TLS with files.
type server struct {
	files mtls.Files
	pool  testenv.TestPool
	api   string
	http  string
	proc  *testenv.ServerProcess
	log   string
}

// copyFiles copies o's files into dir, so a test can rotate one side's.
func copyFiles(t *testing.T, o mtls.Files, dir string) mtls.Files {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out := mtls.Files{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), CAFile: filepath.Join(dir, "ca.crt")}
	for from, to := range map[string]string{o.CertFile: out.CertFile, o.KeyFile: out.KeyFile, o.CAFile: out.CAFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func startServer(t *testing.T, files mtls.Files) *server {
	t.Helper()
	tp := testenv.NewTestPool(t, "dotst")
	ports := testenv.FreeTCPPorts(t, 3)
	s := &server{files: files, pool: tp, api: "127.0.0.1:" + strconv.Itoa(ports[0]), http: "127.0.0.1:" + strconv.Itoa(ports[1]),
		log: filepath.Join(tp.Dir, "server.log")}
	args := []string{"server", "--name", "tls", "--endpoint", "tcp://" + s.api, "--http-address", s.http,
		"--run-dir", tp.Dir + "/run", "--pool", tp.Name, "--vdev", tp.Vdev, "--create-pool", "--pool-file-size", "1Gi",
		"--mount-root", tp.Mountpoint, "--nfs-port", strconv.Itoa(ports[2]), "--nfs-bind-address", "127.0.0.1",
		"--nfs-clients", "127.0.0.0/8", "--default-volume-size", "16Mi",
		"--tls-cert-file", files.CertFile, "--tls-key-file", files.KeyFile, "--tls-ca-file", files.CAFile}
	s.proc = testenv.StartServerProcess(t, "tls", args, s.log, func() { testenv.KeepLog(t, "dots-tls", "tls", s.log, 40) })
	t.Cleanup(func() {
		s.proc.Stop(syscall.SIGTERM)
		if t.Failed() {
			testenv.KeepLog(t, "dots-tls", "tls", s.log, 40)
		}
	})
	return s
}

var failureLine = regexp.MustCompile(`(?m)^dots_tls_handshake_failures_total\{reason="([a-z_]+)"\} ([0-9.e+]+)$`)

// failures reads dots_tls_handshake_failures_total from the server's /metrics.
func (s *server) failures(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range failureLine.FindAllStringSubmatch(testenv.Metrics(t, s.http), -1) {
		f, _ := strconv.ParseFloat(m[2], 64)
		out[m[1]] = int(f)
	}
	if len(out) != len(mtls.Reasons) {
		t.Fatalf("/metrics shows reasons %v, want all of %v", out, mtls.Reasons)
	}
	return out
}

// datasets lists the datasets of the server's pool.
func (s *server) datasets(t *testing.T) string {
	t.Helper()
	return testenv.Zfs(t, "list", "-H", "-o", "name", "-r", s.pool.Name)
}

// createVolume dials a fresh connection with creds and asks for a volume;
// it returns the number of connections the client made and the call's error.
func createVolume(t *testing.T, addr string, creds credentials.TransportCredentials, name string) (int, error) {
	t.Helper()
	var dials atomic.Int32
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds),
		grpc.WithAuthority(mtls.ServerIdentity),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, "tcp", a)
		}),
		// One connection attempt per client: a refusal is counted once.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: time.Hour, MaxDelay: time.Hour}, MinConnectTimeout: 10 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = csi.NewControllerClient(conn).CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name,
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}},
	})
	conn.Close()
	return int(dials.Load()), err
}

// probe calls Probe on a new connection and returns the certificate the
// server presented.
func probe(addr string, creds credentials.TransportCredentials) (*x509.Certificate, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := csi.NewIdentityClient(conn).Probe(ctx, &csi.ProbeRequest{}, grpc.Peer(&p)); err != nil {
		return nil, err
	}
	return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0], nil
}

// attacker is a client that trusts the real CA and presents cert (nil:
// none), whatever CAs the server asks for.
func attacker(t *testing.T, pki mtls.Bundle, cert *mtls.KeyPair) credentials.TransportCredentials {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(pki.CA.Cert)
	cfg := &tls.Config{RootCAs: roots, ServerName: mtls.ServerIdentity, MinVersion: tls.VersionTLS13}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return credentials.NewTLS(cfg)
}

func issue(t *testing.T, ca *mtls.CA, l mtls.Leaf) *mtls.KeyPair {
	t.Helper()
	kp, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestMutualTLS(t *testing.T) {
	pki := testenv.PKI(t)
	srv := startServer(t, copyFiles(t, pki.ServerOptions().Files, filepath.Join(t.TempDir(), "server")))

	otherCA, err := mtls.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	selfSigned, err := mtls.SelfSigned(mtls.Leaf{DNSNames: []string{mtls.ControllerIdentity}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	ctrl := mtls.Leaf{DNSNames: []string{mtls.ControllerIdentity}, Client: true}
	expired := ctrl
	expired.NotBefore, expired.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)

	// Each refused client: the call fails, nothing is created, and each of
	// its connections is counted under its reason, and nothing else.
	refused := []struct {
		name   string
		creds  credentials.TransportCredentials
		reason string
	}{
		{"plaintext", insecure.NewCredentials(), mtls.ReasonPlaintext},
		{"no-certificate", attacker(t, pki, nil), mtls.ReasonNoCertificate},
		{"self-signed", attacker(t, pki, selfSigned), mtls.ReasonUnknownAuthority},
		{"other-ca", attacker(t, pki, issue(t, otherCA, ctrl)), mtls.ReasonUnknownAuthority},
		{"expired", attacker(t, pki, issue(t, pki.CA, expired)), mtls.ReasonExpired},
		{"wrong-identity", attacker(t, pki, issue(t, pki.CA, mtls.Leaf{DNSNames: []string{"dots-node"}, Client: true})), mtls.ReasonWrongIdentity},
	}
	counted := 0
	for _, c := range refused {
		before := srv.failures(t)
		dials, err := createVolume(t, srv.api, c.creds, "evil-"+c.name)
		if err == nil {
			t.Fatalf("%s: CreateVolume succeeded", c.name)
		}
		if dials < 1 {
			t.Fatalf("%s: the client never connected", c.name)
		}
		var after map[string]int
		poll.Until(t, 10*time.Second, c.name+" counted", func() error {
			after = srv.failures(t)
			if after[c.reason]-before[c.reason] < dials {
				return fmt.Errorf("%s: %d of %d connections counted", c.reason, after[c.reason]-before[c.reason], dials)
			}
			return nil
		})
		for _, r := range mtls.Reasons {
			want := before[r]
			if r == c.reason {
				want += dials
			}
			if after[r] != want {
				t.Errorf("%s: dots_tls_handshake_failures_total{reason=%q} = %d, want %d", c.name, r, after[r], want)
			}
		}
		counted += dials
		t.Logf("%s: refused (%v), counted as %s", c.name, err, c.reason)
	}
	if ds := srv.datasets(t); strings.Contains(ds, "evil-") {
		t.Fatalf("a refused client created a dataset:\n%s", ds)
	}
	// The same call with the controller's certificate works, so the checks
	// above could have failed.
	good := testenv.ClientCreds(t)
	if _, err := createVolume(t, srv.api, good, "good"); err != nil {
		t.Fatalf("the controller's certificate: %v", err)
	}
	if ds := srv.datasets(t); !strings.Contains(ds, "/good") {
		t.Fatalf("no dataset for the volume created:\n%s", ds)
	}

	// The server's certificate rotated in place (Secret-style rename, same
	// CA, new serial): the next connection sees it, the process is the same.
	next := issue(t, pki.CA, mtls.Leaf{DNSNames: []string{mtls.ServerIdentity}, Server: true, Client: true})
	t0 := time.Now()
	if err := next.Write(srv.files.CertFile, srv.files.KeyFile); err != nil {
		t.Fatal(err)
	}
	seen, err := probe(srv.api, good)
	rotation := time.Since(t0)
	if err != nil || seen == nil || seen.SerialNumber.Cmp(next.Cert.SerialNumber) != 0 {
		t.Fatalf("after the server's rotation: err %v, serial seen %v, want %x", err, seen, next.Cert.SerialNumber)
	}
	if exited(srv.proc) {
		t.Fatal("the server exited during the rotation")
	}

	clientRotation := rotateController(t, pki, srv)
	fmt.Printf("tls: handshake ok refusals=%d refused_connections=%d rotation_s=%.3f client_rotation_s=%.1f\n",
		len(refused), counted, rotation.Seconds(), clientRotation.Seconds())
}

// rotateController rotates the CA on the server and the certificate of a
// registry (the controller's view of the servers) without restarting
// either: once the server trusts only a new CA, the registry's next
// connection is refused; once its files hold a certificate of the new CA,
// it reconnects by itself. It returns how long that took.
func rotateController(t *testing.T, pki mtls.Bundle, srv *server) time.Duration {
	t.Helper()
	// The registry reaches the server through a proxy the test can cut,
	// forcing new connections (and handshakes) on a live registry.
	px := newProxy(t, srv.api)
	co := pki.ClientOptions()
	co.Files = copyFiles(t, co.Files, filepath.Join(t.TempDir(), "controller"))
	creds, err := mtls.ClientCredentials(co)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(discovery.Static{{Name: "tls", APIAddress: px.addr(), NFSAddress: "127.0.0.1"}}, creds,
		registry.Options{Interval: 100 * time.Millisecond, ProbeTimeout: 2 * time.Second}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go reg.Run(ctx)
	// state waits for a probe after since that found the server healthy or not.
	state := func(what string, since time.Time, healthy bool) {
		t.Helper()
		poll.Until(t, 30*time.Second, what, func() error {
			m, ok := reg.Get("tls")
			if !ok {
				return fmt.Errorf("no member")
			}
			st := m.Status()
			if st.Checked.Before(since) || st.Healthy != healthy {
				return fmt.Errorf("healthy=%v (%s) at %s", st.Healthy, st.Error, st.Checked.Format(time.StampMilli))
			}
			return nil
		})
	}
	state("the registry sees the server", time.Now(), true)

	// The server now trusts only a new CA: the registry's connection
	// lives on, its next one is refused (its certificate is of the old CA).
	ca2, err := mtls.NewCA("dots CA 2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	replace(t, srv.files.CAFile, ca2.CertPEM)
	before := srv.failures(t)
	cut := time.Now()
	px.cut()
	state("the registry refused after the server's CA rotation", cut, false)
	if after := srv.failures(t); after[mtls.ReasonUnknownAuthority] <= before[mtls.ReasonUnknownAuthority] {
		t.Fatalf("the registry's refusal was not counted: before %v, after %v", before, after)
	}

	// The registry's files now hold a certificate of the new CA (its CA
	// file keeps the old CA, which issued the server's certificate): it
	// reconnects by itself, without a restart.
	t0 := time.Now()
	if err := issue(t, ca2, mtls.Leaf{DNSNames: []string{mtls.ControllerIdentity}, Client: true}).Write(co.CertFile, co.KeyFile); err != nil {
		t.Fatal(err)
	}
	state("the registry reconnects with its new certificate", t0, true)
	return time.Since(t0)
}

// replace swaps a file's contents by a rename, as a Secret volume does.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".new", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// proxy forwards TCP connections to a server; cut closes every one.
type proxy struct {
	lis   net.Listener
	to    string
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, to string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, to: to}
	t.Cleanup(func() { lis.Close(); p.cut() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// exited says whether the server process has exited.
func exited(p *testenv.ServerProcess) bool {
	select {
	case <-p.Exited():
		return true
	default:
		return false
	}
}
