package server

import (
	"errors"
	"flag"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/mtls"
)

// ReplicationConfig is how a server calls the other servers for replicas
// (README "Replicas"): over mutual TLS with its own certificate (a
// dots-server certificate is also a client's), or in plaintext when the
// server runs --insecure.
type ReplicationConfig struct {
	// PeerIdentity is the identity other servers must present.
	PeerIdentity string
	// CallTimeout bounds one control call to a peer (State, ...); a
	// stream is bounded by its zfs commands' deadlines.
	CallTimeout time.Duration
}

// DefaultReplicationCallTimeout bounds a State or control call to a peer.
const DefaultReplicationCallTimeout = 10 * time.Second

// AddFlags registers the replication flags.
func (c *ReplicationConfig) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.PeerIdentity, "replication-peer-identity", mtls.ServerIdentity,
		"identity (DNS name in the certificate) another storage server must present when this one sends it a volume's replica")
	fs.DurationVar(&c.CallTimeout, "replication-call-timeout", DefaultReplicationCallTimeout,
		"bound of one control call to another server for replicas (its state before each send, the start-up confirmation of a replicated primary)")
}

// Validate checks c and fills defaults.
func (c *ReplicationConfig) Validate() error {
	if c.PeerIdentity == "" {
		c.PeerIdentity = mtls.ServerIdentity
	}
	if c.CallTimeout < 0 {
		return errors.New("--replication-call-timeout must not be negative")
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultReplicationCallTimeout
	}
	return nil
}

// peerCredentials are what this server dials other servers with: its own
// certificate (mutual TLS, the peer must present PeerIdentity), or
// plaintext when it serves --insecure or a unix socket without TLS files.
func (c *Config) peerCredentials() (credentials.TransportCredentials, error) {
	network, _, _ := csirpc.ParseEndpoint(c.Endpoint)
	if c.TLS.Insecure || (network != "tcp" && c.TLS.CertFile == "") {
		return insecure.NewCredentials(), nil
	}
	return mtls.ClientCredentials(mtls.ClientOptions{Files: c.TLS.Files, ServerIdentity: c.Replication.PeerIdentity})
}
