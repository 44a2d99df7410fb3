package server

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/pkg/mtls"
)

// Servers call each other with their own certificate, in plaintext only
// when they serve plaintext themselves.
func TestReplicationConfig(t *testing.T) {
	parse := func(args ...string) (Config, error) {
		var cfg Config
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		cfg.AddFlags(fs)
		if err := fs.Parse(append([]string{"--name=s0", "--nfs-clients=10.0.0.0/8", "--vdev=/dev/sdx"}, args...)); err != nil {
			t.Fatal(err)
		}
		return cfg, cfg.Validate()
	}
	cfg, err := parse("--insecure")
	if err != nil || cfg.Replication.PeerIdentity != mtls.ServerIdentity || cfg.Replication.CallTimeout != DefaultReplicationCallTimeout {
		t.Fatalf("defaults: %+v, %v", cfg.Replication, err)
	}
	if c, err := cfg.peerCredentials(); err != nil || c.Info().SecurityProtocol != "insecure" {
		t.Fatalf("an --insecure server's peer credentials: %v, %v", c, err)
	}
	if _, err := parse("--insecure", "--replication-call-timeout=-1s"); err == nil || !strings.Contains(err.Error(), "replication-call-timeout") {
		t.Fatalf("a negative timeout: %v", err)
	}
	cfg, err = parse("--tls-cert-file=/missing/c", "--tls-key-file=/missing/k", "--tls-ca-file=/missing/ca", "--replication-call-timeout=3s")
	if err != nil || cfg.Replication.CallTimeout != 3*time.Second {
		t.Fatalf("TLS config: %+v, %v", cfg.Replication, err)
	}
	// With TLS files, peers are dialled with them: missing files fail
	// at start, not at the first send.
	if _, err := cfg.peerCredentials(); err == nil {
		t.Fatal("peer credentials from missing files")
	}
}
