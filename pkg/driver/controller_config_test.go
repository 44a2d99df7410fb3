package driver

import (
	"flag"
	"strings"
	"testing"
)

// The controller calls servers over mutual TLS unless told --insecure, and
// serves its plaintext CSI endpoint only on a unix socket.
func TestControllerConfigTLS(t *testing.T) {
	parse := func(args ...string) error {
		var c ControllerConfig
		fs := flag.NewFlagSet("controller", flag.ContinueOnError)
		c.AddFlags(fs)
		if err := fs.Parse(append([]string{"--placements=memory", "--server=name=s0,api=127.0.0.1:7070,nfs=127.0.0.1"}, args...)); err != nil {
			return err
		}
		return c.Validate()
	}
	b := testBundle(t)
	o := b.ClientOptions()
	files := []string{"--tls-cert-file=" + o.CertFile, "--tls-key-file=" + o.KeyFile, "--tls-ca-file=" + o.CAFile}
	for _, c := range []struct {
		args []string
		want string // "" when valid
	}{
		{nil, "--tls-cert-file"},
		{[]string{"--insecure"}, ""},
		{files, ""},
		{append(files, "--tls-server-identity=dots-other", "--admin-socket=/run/dots/admin.sock"), ""},
		{append(files, "--insecure"), "exclude"},
		{append(files, "--endpoint=tcp://127.0.0.1:9000"), "unix socket only"},
	} {
		err := parse(c.args...)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: err %v, want %q", c.args, err, c.want)
		}
	}
}

// The failover flags are the controller's, checked with the rest; failover
// is off unless the servers' pods are named.
func TestControllerConfigFailover(t *testing.T) {
	parse := func(args ...string) (ControllerConfig, error) {
		var c ControllerConfig
		fs := flag.NewFlagSet("controller", flag.ContinueOnError)
		c.AddFlags(fs)
		err := fs.Parse(append([]string{"--placements=memory", "--insecure", "--server=name=s0,api=127.0.0.1:7070,nfs=127.0.0.1"}, args...))
		if err == nil {
			err = c.Validate()
		}
		return c, err
	}
	if c, err := parse(); err != nil || c.Failover.Enabled() {
		t.Errorf("defaults: enabled %v, %v", c.Failover.Enabled(), err)
	}
	if c, err := parse("--server-failover-selector=app.kubernetes.io/component=server", "--server-failover-after=45s"); err != nil || !c.Failover.Enabled() {
		t.Errorf("selector given: enabled %v, %v", c.Failover.Enabled(), err)
	}
	if _, err := parse("--server-failover-selector=app=", "--server-failover-after=-1s"); err == nil || !strings.Contains(err.Error(), "server-failover-after") {
		t.Errorf("negative delay: %v", err)
	}
}

// Automatic promotion is off by default; --restart-pods-on-promotion
// reaches the hook's constructor.
func TestControllerConfigPromotion(t *testing.T) {
	parse := func(args ...string) (ControllerConfig, error) {
		var c ControllerConfig
		fs := flag.NewFlagSet("controller", flag.ContinueOnError)
		c.AddFlags(fs)
		err := fs.Parse(append([]string{"--placements=memory", "--insecure", "--server=name=s0,api=127.0.0.1:7070,nfs=127.0.0.1"}, args...))
		if err == nil {
			err = c.Validate()
		}
		return c, err
	}
	if c, err := parse(); err != nil || c.PromoteAfter != 0 || c.RestartPodsOnPromotion {
		t.Errorf("defaults: %v %v %v", c.PromoteAfter, c.RestartPodsOnPromotion, err)
	}
	if c, err := parse("--promote-after=90s", "--restart-pods-on-promotion"); err != nil || c.PromoteAfter.Seconds() != 90 || !c.RestartPodsOnPromotion {
		t.Errorf("set: %v %v %v", c.PromoteAfter, c.RestartPodsOnPromotion, err)
	}
	if _, err := parse("--promote-after=-1s"); err == nil || !strings.Contains(err.Error(), "promote-after") {
		t.Errorf("negative: %v", err)
	}
}
