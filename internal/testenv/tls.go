package testenv

import (
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc/credentials"

	"github.com/dots-csi/dots/pkg/mtls"
)

// pkis are the tests' certificates, one CA per test.
var pkis sync.Map // testing.TB → mtls.Bundle

// PKI returns the test's CA with a storage server's and the controller's
// certificates (pkg/mtls.EnsureBundle), made in its temporary directory on
// first use: every server a test starts and every client it dials with
// share them, as one cluster does.
func PKI(t testing.TB) mtls.Bundle {
	t.Helper()
	if b, ok := pkis.Load(t); ok {
		return b.(mtls.Bundle)
	}
	b, err := mtls.EnsureBundle(filepath.Join(t.TempDir(), "tls"))
	if err != nil {
		t.Fatal(err)
	}
	pkis.Store(t, b)
	t.Cleanup(func() { pkis.Delete(t) })
	return b
}

// ClientCreds are the controller's credentials of the test's PKI.
func ClientCreds(t testing.TB) credentials.TransportCredentials {
	t.Helper()
	c, err := mtls.ClientCredentials(PKI(t).ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ServerTLSFlags are the `dots server` flags of the test's PKI.
func ServerTLSFlags(t testing.TB) []string {
	t.Helper()
	o := PKI(t).ServerOptions()
	return []string{"--tls-cert-file", o.CertFile, "--tls-key-file", o.KeyFile, "--tls-ca-file", o.CAFile}
}
