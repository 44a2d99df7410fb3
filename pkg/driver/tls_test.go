package driver

import (
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc/credentials"

	"github.com/dots-csi/dots/pkg/mtls"
)

// bundles are the tests' certificates, one CA per test, so the fake
// servers serve mutual TLS and the controller dials them as in production.
var bundles sync.Map // testing.TB → mtls.Bundle

func testBundle(t testing.TB) mtls.Bundle {
	t.Helper()
	if b, ok := bundles.Load(t); ok {
		return b.(mtls.Bundle)
	}
	b, err := mtls.EnsureBundle(filepath.Join(t.TempDir(), "tls"))
	if err != nil {
		t.Fatal(err)
	}
	bundles.Store(t, b)
	t.Cleanup(func() { bundles.Delete(t) })
	return b
}

func testServerCreds(t testing.TB) credentials.TransportCredentials {
	t.Helper()
	c, err := mtls.ServerCredentials(testBundle(t).ServerOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testClientCreds(t testing.TB) credentials.TransportCredentials {
	t.Helper()
	c, err := mtls.ClientCredentials(testBundle(t).ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	return c
}
