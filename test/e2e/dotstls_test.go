package e2e

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// dotsTLS returns the directory of the certificates dots' servers and
// controller talk mutual TLS with, as the chart's Secrets would hold
// them: a CA, a storage server's certificate (DNS name dots-server) and
// the controller's (dots-controller). Made once per work directory.
func dotsTLS(t *testing.T, dir string) string {
	t.Helper()
	tlsDir := filepath.Join(dir, "dots-tls")
	if _, err := os.Stat(filepath.Join(tlsDir, "controller.key")); err == nil {
		return tlsDir
	}
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dots-e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	writePEM(t, filepath.Join(tlsDir, "ca.crt"), "CERTIFICATE", caDER)
	for i, l := range []struct {
		name, identity string
		usages         []x509.ExtKeyUsage
	}{
		{"server", "dots-server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		{"controller", "dots-controller", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	} {
		key := newKey(t)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: l.identity}, DNSNames: []string{l.identity},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: l.usages,
		}, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		writePEM(t, filepath.Join(tlsDir, l.name+".key"), "EC PRIVATE KEY", kder)
		writePEM(t, filepath.Join(tlsDir, l.name+".crt"), "CERTIFICATE", der)
	}
	return tlsDir
}

// dotsTLSFlags are the --tls-* flags of a role ("server", "controller").
func dotsTLSFlags(t *testing.T, dir, role string) []string {
	t.Helper()
	d := dotsTLS(t, dir)
	return []string{"--tls-cert-file=" + filepath.Join(d, role+".crt"), "--tls-key-file=" + filepath.Join(d, role+".key"),
		"--tls-ca-file=" + filepath.Join(d, "ca.crt")}
}
