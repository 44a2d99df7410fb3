// Package mtls is mutual TLS on every dots gRPC connection over the network:
// the flags, the server and client transport credentials (TLS 1.3 only,
// both sides authenticated by one CA, identities checked, files re-read when
// they change), the count of refused handshakes, and issuing certificates
// for the local stack and the tests.
//
// An identity is a DNS name in the subject alternative names of a leaf
// certificate: dots-server for storage servers, dots-controller for the
// controller. A server accepts the identities it is told to; a client
// requires the one its server must present.
package mtls

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// The identities of dots' roles.
const (
	ServerIdentity     = "dots-server"
	ControllerIdentity = "dots-controller"
)

// DefaultClientIdentities are the peers a storage server accepts: the
// controller, and other servers (a server's certificate is also a client's).
var DefaultClientIdentities = []string{ControllerIdentity, ServerIdentity}

// Files are the PEM files of one side of a connection.
type Files struct {
	CertFile string // this side's certificate (chain)
	KeyFile  string // its private key
	CAFile   string // the CA(s) the peer's certificate must chain to
	// Insecure gives up TLS: plaintext, no authentication. Only by an
	// explicit flag; warned about on every start.
	Insecure bool
}

func (f *Files) addFlags(fs *flag.FlagSet, what string) {
	fs.StringVar(&f.CertFile, "tls-cert-file", "", "PEM certificate "+what+" presents (re-read when it changes: replace the file or the Secret, no restart)")
	fs.StringVar(&f.KeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	fs.StringVar(&f.CAFile, "tls-ca-file", "", "PEM CA certificate(s) the peer's certificate must chain to (re-read when it changes)")
	fs.BoolVar(&f.Insecure, "insecure", false, "INSECURE: plaintext gRPC without TLS or authentication; anyone who reaches the port can create and delete every volume (development only)")
}

func (f *Files) validate() error {
	set := f.CertFile != "" || f.KeyFile != "" || f.CAFile != ""
	switch {
	case f.Insecure && set:
		return errors.New("--insecure and --tls-cert-file/--tls-key-file/--tls-ca-file exclude each other")
	case f.Insecure:
		return nil
	case f.CertFile == "" || f.KeyFile == "" || f.CAFile == "":
		return errors.New("--tls-cert-file, --tls-key-file and --tls-ca-file are required (mutual TLS); --insecure serves plaintext to anyone instead")
	}
	return nil
}

// ServerOptions are the TLS flags of a gRPC server reachable over the
// network (a storage server).
type ServerOptions struct {
	Files
	// Identities are the peer identities allowed to call.
	Identities []string
}

// AddFlags registers --tls-cert-file, --tls-key-file, --tls-ca-file,
// --tls-client-identities and --insecure.
func (o *ServerOptions) AddFlags(fs *flag.FlagSet) {
	o.addFlags(fs, "this server")
	o.Identities = append([]string(nil), DefaultClientIdentities...)
	fs.Func("tls-client-identities", fmt.Sprintf("comma-separated identities (DNS names in the client certificate) allowed to call (default %s)",
		strings.Join(DefaultClientIdentities, ",")), func(v string) error {
		o.Identities = splitList(v)
		return nil
	})
}

// Validate checks the options.
func (o *ServerOptions) Validate() error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.Insecure {
		return nil
	}
	if len(o.Identities) == 0 {
		return errors.New("--tls-client-identities: name at least one identity")
	}
	for _, id := range o.Identities {
		if err := validIdentity(id); err != nil {
			return fmt.Errorf("--tls-client-identities: %w", err)
		}
	}
	return nil
}

// ClientOptions are the TLS flags of a client of storage servers (the
// controller).
type ClientOptions struct {
	Files
	// ServerIdentity is the identity every server must present.
	ServerIdentity string
}

// AddFlags registers --tls-cert-file, --tls-key-file, --tls-ca-file,
// --tls-server-identity and --insecure.
func (o *ClientOptions) AddFlags(fs *flag.FlagSet) {
	o.addFlags(fs, "the controller")
	fs.StringVar(&o.ServerIdentity, "tls-server-identity", ServerIdentity, "identity (DNS name in the certificate) every storage server must present")
}

// Validate checks the options.
func (o *ClientOptions) Validate() error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.Insecure {
		return nil
	}
	if err := validIdentity(o.ServerIdentity); err != nil {
		return fmt.Errorf("--tls-server-identity: %w", err)
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// validIdentity accepts what can be a DNS SAN: letters, digits, '-' and
// '.', as x509 hostname matching compares them.
func validIdentity(id string) error {
	if id == "" || len(id) > 253 {
		return fmt.Errorf("identity %q: want 1 to 253 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("identity %q: only lower-case letters, digits, '-' and '.'", id)
		}
	}
	return nil
}
