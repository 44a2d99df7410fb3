package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity of what this package issues: the local stack reissues its
// leaves on every start, and its CA when it would expire before them.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
)

// CA is a certificate authority (ECDSA P-256) that issues dots' leaves.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// NewCA makes a CA named name, valid from now for validity.
func NewCA(name string, validity time.Duration) (*CA, error) {
	key, sn, err := newKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pemOf("CERTIFICATE", der)}, nil
}

// CA files in a directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// EnsureCA returns the CA kept in dir (ca.crt, ca.key), making and writing
// a new one when there is none or it expires within LeafValidity. dir is
// created 0700, the key written 0600.
func EnsureCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// It holds a CA key: nobody else may even list it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	certPEM, cerr := os.ReadFile(filepath.Join(dir, CACertFile))
	keyPEM, kerr := os.ReadFile(filepath.Join(dir, CAKeyFile))
	switch {
	case cerr == nil && kerr == nil:
		ca, err := parseCA(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("the CA in %s: %w (remove it to make a new one)", dir, err)
		}
		if time.Now().Add(LeafValidity).Before(ca.Cert.NotAfter) {
			return ca, nil
		}
	case cerr != nil && !errors.Is(cerr, os.ErrNotExist):
		return nil, cerr
	case kerr != nil && !errors.Is(kerr, os.ErrNotExist):
		return nil, kerr
	}
	ca, err := NewCA("dots CA", CAValidity)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	// The key first: a CA certificate without its key is of no use.
	if err := writeFile(filepath.Join(dir, CAKeyFile), pemOf("EC PRIVATE KEY", der), 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CACertFile), ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("the key is not ECDSA")
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("the certificate is not a CA")
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// Leaf says what a leaf certificate holds.
type Leaf struct {
	Name     string   // subject common name; default the first DNS name
	DNSNames []string // the identities (and host names)
	IPs      []net.IP
	Server   bool // may serve (extended key usage serverAuth)
	Client   bool // may call (clientAuth)
	// NotBefore and NotAfter default to now (less a minute of clock skew)
	// and now + LeafValidity.
	NotBefore, NotAfter time.Time
}

// KeyPair is an issued certificate and its key, in PEM.
type KeyPair struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// Issue issues a leaf with a fresh ECDSA P-256 key and a random serial.
func (ca *CA) Issue(l Leaf) (*KeyPair, error) { return issue(l, ca.Cert, ca.Key) }

// SelfSigned makes a leaf signed by its own key, chaining to no CA.
func SelfSigned(l Leaf) (*KeyPair, error) { return issue(l, nil, nil) }

func issue(l Leaf, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*KeyPair, error) {
	key, sn, err := newKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if l.NotBefore.IsZero() {
		l.NotBefore = now.Add(-time.Minute)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = now.Add(LeafValidity)
	}
	if l.Name == "" && len(l.DNSNames) > 0 {
		l.Name = l.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: l.Name},
		NotBefore: l.NotBefore, NotAfter: l.NotAfter,
		DNSNames: l.DNSNames, IPAddresses: l.IPs,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if l.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if l.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, CertPEM: pemOf("CERTIFICATE", der), KeyPEM: pemOf("EC PRIVATE KEY", kder)}, nil
}

// Write writes the key (0600) and then the certificate, each by an atomic
// rename, creating missing directories 0700. A reader between the two
// renames sees a key that does not match its certificate: the credentials
// keep their last good material until both match.
func (kp *KeyPair) Write(certFile, keyFile string) error {
	if err := writeFile(keyFile, kp.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(certFile, kp.CertPEM, 0o644)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// newKey makes a certificate's key and a random serial for it.
func newKey() (*ecdsa.PrivateKey, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return key, sn, err
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// Bundle is a CA and a certificate for each role of a dots cluster in one
// directory: what the local stack and the tests run with.
//
//	DIR/ca.crt ca.key                  the CA (kept across runs)
//	DIR/server.crt server.key          dots-server, serverAuth+clientAuth, loopback IPs
//	DIR/controller.crt controller.key  dots-controller, clientAuth
type Bundle struct {
	Dir string
	CA  *CA
}

// EnsureBundle keeps the CA in dir (EnsureCA) and issues the server and
// controller leaves afresh.
func EnsureBundle(dir string) (Bundle, error) {
	ca, err := EnsureCA(dir)
	if err != nil {
		return Bundle{}, err
	}
	b := Bundle{Dir: dir, CA: ca}
	for _, l := range []struct {
		name string
		leaf Leaf
	}{
		{"server", Leaf{DNSNames: []string{ServerIdentity, "localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, Server: true, Client: true}},
		{"controller", Leaf{DNSNames: []string{ControllerIdentity}, Client: true}},
	} {
		kp, err := ca.Issue(l.leaf)
		if err != nil {
			return Bundle{}, err
		}
		if err := kp.Write(b.path(l.name+".crt"), b.path(l.name+".key")); err != nil {
			return Bundle{}, err
		}
	}
	return b, nil
}

func (b Bundle) path(name string) string { return filepath.Join(b.Dir, name) }

// ServerOptions are a storage server's options with the bundle's files.
func (b Bundle) ServerOptions() ServerOptions {
	return ServerOptions{Files: Files{CertFile: b.path("server.crt"), KeyFile: b.path("server.key"), CAFile: b.path(CACertFile)},
		Identities: append([]string(nil), DefaultClientIdentities...)}
}

// ClientOptions are the controller's options with the bundle's files.
func (b Bundle) ClientOptions() ClientOptions {
	return ClientOptions{Files: Files{CertFile: b.path("controller.crt"), KeyFile: b.path("controller.key"), CAFile: b.path(CACertFile)},
		ServerIdentity: ServerIdentity}
}
