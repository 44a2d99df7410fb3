package mtls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"
)

// ErrWrongIdentity is a peer whose certificate chains to the CA but names
// none of the identities this side accepts.
var ErrWrongIdentity = errors.New("peer certificate names no accepted identity")

// ServerCredentials returns the gRPC credentials of a server with o:
// mutual TLS 1.3 with the files (re-read when they change), peers
// restricted to o.Identities, and every refused handshake counted in
// dots_tls_handshake_failures_total{reason} on reg (nil: not counted) and
// logged. With o.Insecure it warns and returns plaintext credentials.
func ServerCredentials(o ServerOptions, reg prometheus.Registerer) (credentials.TransportCredentials, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Insecure {
		klog.Warning("--insecure: the gRPC API is served in plaintext without authentication; anyone who reaches it can create and delete every volume")
		return insecure.NewCredentials(), nil
	}
	src, err := newSource(o.Files)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	allowed := slices.Clone(o.Identities)
	tc := credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		// Each handshake gets the files' current material.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := src.get()
			return &tls.Config{
				MinVersion:       tls.VersionTLS13,
				MaxVersion:       tls.VersionTLS13,
				Certificates:     []tls.Certificate{m.cert},
				ClientAuth:       tls.RequireAndVerifyClientCert,
				ClientCAs:        m.pool,
				VerifyConnection: requireIdentity(allowed),
				// A resumed session would skip the chain check against
				// the current CA file (a CA removed in a rotation would
				// still let its clients in); gRPC connections live long,
				// so full handshakes cost nothing that matters.
				SessionTicketsDisabled: true,
			}, nil
		},
	})
	return &serverCreds{TransportCredentials: tc, failures: newFailureMetric(reg)}, nil
}

// requireIdentity accepts a verified peer whose leaf certificate names one
// of the allowed identities.
func requireIdentity(allowed []string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: no certificate", ErrWrongIdentity)
		}
		leaf := cs.PeerCertificates[0]
		for _, n := range leaf.DNSNames {
			if slices.Contains(allowed, n) {
				return nil
			}
		}
		return fmt.Errorf("%w: certificate names %v, accepted are %v", ErrWrongIdentity, leaf.DNSNames, allowed)
	}
}

// serverCreds counts and logs refused handshakes.
type serverCreds struct {
	credentials.TransportCredentials
	failures *prometheus.CounterVec
}

func (c *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	remote := raw.RemoteAddr().String()
	if err != nil {
		reason := Reason(err)
		if c.failures != nil {
			c.failures.WithLabelValues(reason).Inc()
		}
		if reason == ReasonClosed {
			// Port scans and TCP probes: no attempt to talk at all.
			klog.V(4).InfoS("TLS handshake refused", "remote", remote, "reason", reason, "err", err)
		} else {
			klog.ErrorS(err, "TLS handshake refused", "remote", remote, "reason", reason)
		}
		return nil, nil, err
	}
	if ti, ok := info.(credentials.TLSInfo); ok && klog.V(4).Enabled() && len(ti.State.PeerCertificates) > 0 {
		leaf := ti.State.PeerCertificates[0]
		klog.V(4).InfoS("TLS peer accepted", "remote", remote, "identities", leaf.DNSNames, "serial", serial(leaf))
	}
	return conn, info, nil
}

func (c *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: c.TransportCredentials.Clone(), failures: c.failures}
}

// ClientCredentials returns the gRPC credentials of a client with o:
// mutual TLS 1.3 with the files (re-read when they change); the server
// must chain to the CA and present o.ServerIdentity. With o.Insecure it
// warns and returns plaintext credentials.
func ClientCredentials(o ClientOptions) (credentials.TransportCredentials, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Insecure {
		klog.Warning("--insecure: storage servers are called in plaintext, without authenticating them or this client")
		return insecure.NewCredentials(), nil
	}
	src, err := newSource(o.Files)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return &clientCreds{src: src, identity: o.ServerIdentity}, nil
}

// clientCreds builds the TLS configuration afresh for each connection, so
// a new connection uses the files' current material.
type clientCreds struct {
	src      *source
	identity string
}

func (c *clientCreds) config() *tls.Config {
	m := c.src.get()
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		RootCAs:    m.pool,
		// The identity, not the dialled address: hostname verification
		// checks it against the server's DNS names.
		ServerName: c.identity,
		// Always present the certificate, even when the server names
		// other CAs, so a mismatch is reported as what it is.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &m.cert, nil },
	}
}

func (c *clientCreds) ClientHandshake(ctx context.Context, _ string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	// gRPC's TLS takes the server name to verify from the authority it is
	// given: the identity, never the dialled address.
	return credentials.NewTLS(c.config()).ClientHandshake(ctx, c.identity, raw)
}

func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("mtls: client credentials cannot serve")
}

func (c *clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

func (c *clientCreds) Clone() credentials.TransportCredentials {
	return &clientCreds{src: c.src, identity: c.identity}
}

// OverrideServerName is deprecated in gRPC; the identity is fixed by the
// options.
func (c *clientCreds) OverrideServerName(string) error { return nil }
