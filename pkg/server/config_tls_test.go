package server

import (
	"flag"
	"strings"
	"testing"
)

// A server's TCP API serves mutual TLS: its files are required unless
// --insecure says otherwise; a unix socket needs neither.
func TestConfigTLS(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // "" when valid
	}{
		{nil, "--tls-cert-file"},
		{[]string{"--insecure"}, ""},
		{[]string{"--tls-cert-file=/c", "--tls-key-file=/k", "--tls-ca-file=/ca"}, ""},
		{[]string{"--tls-cert-file=/c", "--tls-key-file=/k"}, "--tls-ca-file"},
		{[]string{"--tls-cert-file=/c", "--tls-key-file=/k", "--tls-ca-file=/ca", "--tls-client-identities="}, "identity"},
		{[]string{"--endpoint=unix:///run/dots/api.sock"}, ""},
	} {
		var cfg Config
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		cfg.AddFlags(fs)
		if err := fs.Parse(append([]string{"--name=s0", "--nfs-clients=10.0.0.0/8", "--vdev=/dev/sdx"}, c.args...)); err != nil {
			t.Fatal(err)
		}
		err := cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: err %v, want %q", c.args, err, c.want)
		}
	}
}
