package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// Why a server refused a handshake: the values of the reason label.
const (
	ReasonPlaintext        = "plaintext"         // the first bytes are not TLS (a plaintext gRPC or HTTP client)
	ReasonNoCertificate    = "no_certificate"    // the client presented no certificate
	ReasonUnknownAuthority = "unknown_authority" // self-signed, or from another CA
	ReasonExpired          = "expired"           // expired or not yet valid
	ReasonWrongIdentity    = "wrong_identity"    // from the CA, but not an accepted identity
	ReasonPeerRejected     = "peer_rejected"     // the client refused this server's certificate (its CA or identity differ)
	ReasonClosed           = "closed"            // the connection closed before a handshake (port scans, TCP probes)
	ReasonOther            = "other"
)

// Reasons lists every reason, each counted from zero.
var Reasons = []string{ReasonPlaintext, ReasonNoCertificate, ReasonUnknownAuthority, ReasonExpired,
	ReasonWrongIdentity, ReasonPeerRejected, ReasonClosed, ReasonOther}

// Reason classifies a failed server handshake.
func Reason(err error) string {
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return ReasonPlaintext
	}
	if errors.Is(err, ErrWrongIdentity) {
		return ReasonWrongIdentity
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return ReasonUnknownAuthority
	}
	if e, ok := errors.AsType[x509.CertificateInvalidError](err); ok && e.Reason == x509.Expired {
		return ReasonExpired
	}
	// crypto/tls has no type for it; TestRefusalReasons pins the text.
	if strings.Contains(err.Error(), "didn't provide a certificate") {
		return ReasonNoCertificate
	}
	if e, ok := errors.AsType[*net.OpError](err); ok && e.Op == "remote error" {
		return ReasonPeerRejected
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return ReasonClosed
	}
	return ReasonOther
}

// newFailureMetric registers dots_tls_handshake_failures_total on reg (nil:
// none), every reason at zero so a scrape shows there were none.
func newFailureMetric(reg prometheus.Registerer) *prometheus.CounterVec {
	if reg == nil {
		return nil
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dots_tls_handshake_failures_total",
		Help: "TLS handshakes the gRPC server refused, by reason.",
	}, []string{"reason"})
	if err := reg.Register(c); err != nil {
		are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
		if !ok {
			klog.ErrorS(err, "Registering the TLS handshake metric")
			return nil
		}
		// A second server credentials on one registry shares the count.
		c = are.ExistingCollector.(*prometheus.CounterVec)
	}
	for _, r := range Reasons {
		c.WithLabelValues(r)
	}
	return c
}
