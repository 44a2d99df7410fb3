package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

func newBundle(t *testing.T) Bundle {
	t.Helper()
	b, err := EnsureBundle(filepath.Join(t.TempDir(), "tls"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newServerCreds(t *testing.T, o ServerOptions) (credentials.TransportCredentials, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := ServerCredentials(o, reg)
	if err != nil {
		t.Fatal(err)
	}
	return c, reg
}

func newClientCreds(t *testing.T, o ClientOptions) credentials.TransportCredentials {
	t.Helper()
	c, err := ClientCredentials(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// failures reads dots_tls_handshake_failures_total by reason.
func failures(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "dots_tls_handshake_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// handshake runs one connection over loopback TCP: client (nil: connect
// and close) against the server credentials, and returns the server's
// error, the client's, and the server certificate the client saw.
func handshake(t *testing.T, srv credentials.TransportCredentials, client func(net.Conn) (*x509.Certificate, error)) (serverErr, clientErr error, seen *x509.Certificate) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	type result struct {
		cert *x509.Certificate
		err  error
	}
	done := make(chan result, 1)
	stop := make(chan struct{})
	go func() {
		c, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			done <- result{err: err}
			return
		}
		var r result
		if client != nil {
			r.cert, r.err = client(c)
			<-stop // keep the connection until the server is through
		}
		c.Close()
		done <- r
	}()
	raw, err := lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(20 * time.Second)) // a bug fails, not hangs
	conn, _, serverErr := srv.ServerHandshake(raw)
	if conn != nil {
		conn.Close()
	}
	raw.Close()
	close(stop)
	r := <-done
	if r.err != nil && strings.Contains(r.err.Error(), "i/o timeout") {
		t.Fatalf("client timed out: %v", r.err)
	}
	return serverErr, r.err, r.cert
}

// grpcClient handshakes as a gRPC client with creds.
func grpcClient(creds credentials.TransportCredentials) func(net.Conn) (*x509.Certificate, error) {
	return func(c net.Conn) (*x509.Certificate, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, info, err := creds.ClientHandshake(ctx, "127.0.0.1", c)
		if err != nil {
			return nil, err
		}
		// TLS 1.3: the server judges the client's certificate after the
		// client's side is done; a read shows its verdict.
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err != nil && !strings.Contains(err.Error(), "EOF") {
			return nil, err
		}
		return info.(credentials.TLSInfo).State.PeerCertificates[0], nil
	}
}

// tlsClient is a hand-made client: it always presents cert (when not nil)
// and trusts any server, as an attacker would.
func tlsClient(cert *KeyPair) func(net.Conn) (*x509.Certificate, error) {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
		if err != nil {
			panic(err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return grpcClient(credentials.NewTLS(cfg))
}

func mustIssue(t *testing.T, ca *CA, l Leaf) *KeyPair {
	t.Helper()
	kp, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestRefusalReasons(t *testing.T) {
	b := newBundle(t)
	srv, reg := newServerCreds(t, b.ServerOptions())
	other, err := NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	selfSigned, err := SelfSigned(Leaf{DNSNames: []string{ControllerIdentity}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	ctrl := Leaf{DNSNames: []string{ControllerIdentity}, Client: true}
	expired, notYet := ctrl, ctrl
	expired.NotBefore, expired.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	notYet.NotBefore, notYet.NotAfter = time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)
	wrongServer := b.ClientOptions()
	wrongServer.ServerIdentity = "dots-somebody-else"

	for _, c := range []struct {
		name   string
		client func(net.Conn) (*x509.Certificate, error)
		reason string
	}{
		{"plaintext gRPC", func(c net.Conn) (*x509.Certificate, error) {
			_, err := c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
			return nil, err
		}, ReasonPlaintext},
		{"no certificate", tlsClient(nil), ReasonNoCertificate},
		{"self-signed", tlsClient(selfSigned), ReasonUnknownAuthority},
		{"another CA", tlsClient(mustIssue(t, other, ctrl)), ReasonUnknownAuthority},
		{"expired", tlsClient(mustIssue(t, b.CA, expired)), ReasonExpired},
		{"not yet valid", tlsClient(mustIssue(t, b.CA, notYet)), ReasonExpired},
		{"wrong identity", tlsClient(mustIssue(t, b.CA, Leaf{DNSNames: []string{"dots-node"}, Client: true})), ReasonWrongIdentity},
		{"server-only certificate", tlsClient(mustIssue(t, b.CA, Leaf{DNSNames: []string{ControllerIdentity}, Server: true})), ReasonOther},
		{"client wants another server identity", grpcClient(newClientCreds(t, wrongServer)), ReasonPeerRejected},
		{"connect and close", nil, ReasonClosed},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := failures(t, reg)
			serr, _, _ := handshake(t, srv, c.client)
			if serr == nil {
				t.Fatal("the server accepted the handshake")
			}
			if got := Reason(serr); got != c.reason {
				t.Errorf("reason %q (%v), want %q", got, serr, c.reason)
			}
			after := failures(t, reg)
			for _, r := range Reasons {
				want := before[r]
				if r == c.reason {
					want++
				}
				if after[r] != want {
					t.Errorf("dots_tls_handshake_failures_total{reason=%q} = %v, want %v", r, after[r], want)
				}
			}
		})
	}
}

func TestValidPeerAndIdentities(t *testing.T) {
	b := newBundle(t)
	srv, reg := newServerCreds(t, b.ServerOptions())
	serr, cerr, seen := handshake(t, srv, grpcClient(newClientCreds(t, b.ClientOptions())))
	if serr != nil || cerr != nil {
		t.Fatalf("server: %v, client: %v", serr, cerr)
	}
	if !slices.Contains(seen.DNSNames, ServerIdentity) {
		t.Errorf("the client saw %v", seen.DNSNames)
	}
	// A server accepts another server's certificate (the default list).
	sc := b.ServerOptions()
	peer := ClientOptions{Files: Files{CertFile: sc.CertFile, KeyFile: sc.KeyFile, CAFile: sc.CAFile}, ServerIdentity: ServerIdentity}
	if serr, cerr, _ := handshake(t, srv, grpcClient(newClientCreds(t, peer))); serr != nil || cerr != nil {
		t.Fatalf("server as a client: server %v, client %v", serr, cerr)
	}
	// Restricted to the controller, it refuses the server's certificate.
	only := b.ServerOptions()
	only.Identities = []string{ControllerIdentity}
	srv2, _ := newServerCreds(t, only)
	if serr, _, _ := handshake(t, srv2, grpcClient(newClientCreds(t, peer))); Reason(serr) != ReasonWrongIdentity {
		t.Fatalf("want wrong_identity, got %v", serr)
	}
	// A client refuses a server whose certificate is from another CA.
	other := newBundle(t)
	srv3, _ := newServerCreds(t, other.ServerOptions())
	if _, cerr, _ := handshake(t, srv3, grpcClient(newClientCreds(t, b.ClientOptions()))); cerr == nil || !strings.Contains(cerr.Error(), "unknown authority") {
		t.Fatalf("a server of another CA: client error %v", cerr)
	}
	if f := failures(t, reg); f[ReasonOther]+f[ReasonPlaintext]+f[ReasonNoCertificate] != 0 {
		t.Errorf("failures counted for accepted handshakes: %v", f)
	}
}

// TestGRPCEndToEnd: a gRPC server and client with the credentials, the
// peer certificate visible to a call, plaintext refused.
func TestGRPCEndToEnd(t *testing.T) {
	b := newBundle(t)
	srv, _ := newServerCreds(t, b.ServerOptions())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(srv))
	healthpb.RegisterHealthServer(g, health.NewServer())
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	check := func(creds credentials.TransportCredentials) (*peer.Peer, error) {
		conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var p peer.Peer
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
		return &p, err
	}
	p, err := check(newClientCreds(t, b.ClientOptions()))
	if err != nil {
		t.Fatal(err)
	}
	st := p.AuthInfo.(credentials.TLSInfo).State
	if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "h2" {
		t.Errorf("version %x, ALPN %q", st.Version, st.NegotiatedProtocol)
	}
	if _, err := check(insecure.NewCredentials()); err == nil {
		t.Fatal("a plaintext client was served")
	}
}

func TestServerRotation(t *testing.T) {
	b := newBundle(t)
	srv, reg := newServerCreds(t, b.ServerOptions())
	client := grpcClient(newClientCreds(t, b.ClientOptions()))
	_, _, first := handshake(t, srv, client)

	// A Secret volume's swap: new files renamed into place.
	o := b.ServerOptions()
	next := mustIssue(t, b.CA, Leaf{DNSNames: []string{ServerIdentity}, Server: true, Client: true})
	if err := next.Write(o.CertFile, o.KeyFile); err != nil {
		t.Fatal(err)
	}
	serr, cerr, seen := handshake(t, srv, client)
	if serr != nil || cerr != nil {
		t.Fatalf("after rotation: server %v, client %v", serr, cerr)
	}
	if seen.SerialNumber.Cmp(next.Cert.SerialNumber) != 0 || seen.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("a new connection saw serial %x; old %x, new %x", seen.SerialNumber, first.SerialNumber, next.Cert.SerialNumber)
	}

	// A rewrite in place, moments after the last load: same inode, maybe
	// the same size and mtime tick; the contents tell.
	third := mustIssue(t, b.CA, Leaf{DNSNames: []string{ServerIdentity}, Server: true, Client: true})
	if err := os.WriteFile(o.KeyFile, third.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(o.CertFile, third.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, seen := handshake(t, srv, client); seen == nil || seen.SerialNumber.Cmp(third.Cert.SerialNumber) != 0 {
		t.Fatalf("after an in-place rewrite the client saw %v, want serial %x", seen, third.Cert.SerialNumber)
	}
	if f := failures(t, reg); f[ReasonOther] != 0 {
		t.Errorf("failures: %v", f)
	}
}

func TestClientRotation(t *testing.T) {
	b := newBundle(t)
	only := b.ServerOptions()
	only.Identities = []string{ControllerIdentity}
	srv, _ := newServerCreds(t, only)
	co := b.ClientOptions()
	client := grpcClient(newClientCreds(t, co))
	if serr, _, _ := handshake(t, srv, client); serr != nil {
		t.Fatal(serr)
	}
	// The client's files now hold an identity the server refuses: the
	// next connection presents it.
	if err := mustIssue(t, b.CA, Leaf{DNSNames: []string{"dots-node"}, Client: true}).Write(co.CertFile, co.KeyFile); err != nil {
		t.Fatal(err)
	}
	if serr, _, _ := handshake(t, srv, client); Reason(serr) != ReasonWrongIdentity {
		t.Fatalf("after the client's rotation: %v, want wrong_identity", serr)
	}
	// CA rotation on the client: trust only another CA, and the current
	// server is refused.
	other, err := NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFile(co.CAFile, other.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, cerr, _ := handshake(t, srv, client); cerr == nil || !strings.Contains(cerr.Error(), "unknown authority") {
		t.Fatalf("after the client's CA rotation: client error %v", cerr)
	}
}

// A reload that fails (a half-written pair, garbage) keeps the last good
// material; the next good files are taken.
func TestReloadFailureKeepsOld(t *testing.T) {
	b := newBundle(t)
	srv, _ := newServerCreds(t, b.ServerOptions())
	client := grpcClient(newClientCreds(t, b.ClientOptions()))
	_, _, first := handshake(t, srv, client)
	o := b.ServerOptions()

	next := mustIssue(t, b.CA, Leaf{DNSNames: []string{ServerIdentity}, Server: true, Client: true})
	for _, step := range []struct {
		what string
		do   func() error
	}{
		{"certificate without its key", func() error { return writeFile(o.CertFile, next.CertPEM, 0o644) }},
		{"garbage certificate", func() error { return writeFile(o.CertFile, []byte("not a certificate"), 0o644) }},
		{"missing certificate", func() error { return os.Remove(o.CertFile) }},
		{"garbage CA", func() error {
			if err := writeFile(o.CertFile, first.Raw, 0o644); err != nil {
				return err
			}
			return writeFile(o.CAFile, []byte("junk"), 0o644)
		}},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second sees the failure already reported
			serr, cerr, seen := handshake(t, srv, client)
			if serr != nil || cerr != nil || seen.SerialNumber.Cmp(first.SerialNumber) != 0 {
				t.Fatalf("%s: server %v, client %v, serial %v; want the old certificate", step.what, serr, cerr, seen)
			}
		}
	}
	if err := writeFile(o.CAFile, b.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := next.Write(o.CertFile, o.KeyFile); err != nil {
		t.Fatal(err)
	}
	if _, _, seen := handshake(t, srv, client); seen == nil || seen.SerialNumber.Cmp(next.Cert.SerialNumber) != 0 {
		t.Fatalf("good files again: the client saw %v, want %x", seen, next.Cert.SerialNumber)
	}
}

func TestIssuedFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "tls")
	b, err := EnsureBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{"": 0o700, CAKeyFile: 0o600, "server.key": 0o600, "controller.key": 0o600,
		CACertFile: 0o644, "server.crt": 0o644, "controller.crt": 0o644}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", filepath.Join(dir, name), got, want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != len(modes)-1 {
		t.Errorf("%d files in %s, want %d (no temporary files)", len(ents), dir, len(modes)-1)
	}
	// Again (dots local --keep): the same CA, new leaves.
	oldLeaf, _ := os.ReadFile(filepath.Join(dir, "server.crt"))
	b2, err := EnsureBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !b2.CA.Cert.Equal(b.CA.Cert) {
		t.Error("EnsureBundle made a new CA although one was there")
	}
	if newLeaf, _ := os.ReadFile(filepath.Join(dir, "server.crt")); string(newLeaf) == string(oldLeaf) {
		t.Error("the server certificate was not reissued")
	}
	// The leaves carry what the roles need.
	so := b2.ServerOptions()
	pair, err := tls.LoadX509KeyPair(so.CertFile, so.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	if !slices.Contains(leaf.DNSNames, ServerIdentity) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) ||
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || len(leaf.IPAddresses) == 0 {
		t.Errorf("server leaf: names %v, IPs %v, usages %v", leaf.DNSNames, leaf.IPAddresses, leaf.ExtKeyUsage)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(b2.CA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Error(err)
	}
	// A CA about to expire is replaced.
	old, err := NewCA("short", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(old.Key)
	if err := writeFile(filepath.Join(dir, CAKeyFile), pemOf("EC PRIVATE KEY", kder), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(dir, CACertFile), old.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	ca, err := EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Cert.Equal(old.Cert) {
		t.Error("a CA expiring within a leaf's validity was kept")
	}
}

func poolOf(ca *CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func TestOptions(t *testing.T) {
	var s ServerOptions
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	s.AddFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Identities, []string{"dots-controller", "dots-server"}) {
		t.Errorf("default identities %v", s.Identities)
	}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--tls-cert-file") {
		t.Errorf("no files and no --insecure: %v", err)
	}
	if err := fs.Parse([]string{"--tls-cert-file=c", "--tls-key-file=k", "--tls-ca-file=ca", "--tls-client-identities=dots-a, dots-b"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil || !slices.Equal(s.Identities, []string{"dots-a", "dots-b"}) {
		t.Errorf("identities %v, err %v", s.Identities, err)
	}
	for _, bad := range []string{"", "Dots", "a b"} {
		s.Identities = []string{bad}
		if s.Validate() == nil {
			t.Errorf("identity %q accepted", bad)
		}
	}
	if err := fs.Parse([]string{"--insecure"}); err != nil {
		t.Fatal(err)
	}
	if s.Validate() == nil {
		t.Error("--insecure together with TLS files accepted")
	}

	var c ClientOptions
	fs = flag.NewFlagSet("controller", flag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"--insecure"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.ServerIdentity != "dots-server" {
		t.Errorf("--insecure alone: %v, identity %q", err, c.ServerIdentity)
	}
	c.Insecure = false
	if c.Validate() == nil {
		t.Error("a client without files or --insecure accepted")
	}
	// Missing files fail at once, not at the first handshake.
	c.CertFile, c.KeyFile, c.CAFile = "/nonexistent/c", "/nonexistent/k", "/nonexistent/ca"
	if _, err := ClientCredentials(c); err == nil {
		t.Error("credentials from missing files")
	}
}
