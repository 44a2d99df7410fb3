package server

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/pkg/zfs"
)

func parseServerFlags(t *testing.T, args ...string) (*Config, error) {
	t.Helper()
	var cfg Config
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	cfg.AddFlags(fs)
	base := []string{"--name=s0", "--nfs-clients=10.0.0.0/8", "--vdev=/dev/sdx", "--insecure"}
	if err := fs.Parse(append(base, args...)); err != nil {
		t.Fatal(err)
	}
	return &cfg, cfg.Validate()
}

// The NFSv4 timing a server runs with: the defaults, a lease that follows
// a shorter grace period, and a grace period shorter than an explicit
// lease refused.
func TestConfigNFSTiming(t *testing.T) {
	for _, c := range []struct {
		args         []string
		grace, lease time.Duration
		want         string // error text, "" when valid
	}{
		{nil, DefaultGracePeriod, DefaultLeaseLifetime, ""},
		{[]string{"--nfs-grace-period=2s"}, 2 * time.Second, 2 * time.Second, ""},
		{[]string{"--nfs-grace-period=90s"}, 90 * time.Second, DefaultLeaseLifetime, ""},
		{[]string{"--nfs-grace-period=15s", "--nfs-lease-lifetime=10s"}, 15 * time.Second, 10 * time.Second, ""},
		{[]string{"--nfs-grace-period=10s", "--nfs-lease-lifetime=15s"}, 0, 0, "shorter than the lease"},
		{[]string{"--nfs-lease-lifetime=40s"}, 0, 0, "shorter than the lease"},
		{[]string{"--nfs-lease-lifetime=1500ms"}, 0, 0, "whole seconds"},
	} {
		cfg, err := parseServerFlags(t, c.args...)
		if c.want != "" {
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v: err %v, want %q", c.args, err, c.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		g := cfg.nfsConfig()
		if g.GracePeriod != c.grace || g.LeaseLifetime != c.lease {
			t.Errorf("%v: grace %v lease %v, want %v %v", c.args, g.GracePeriod, g.LeaseLifetime, c.grace, c.lease)
		}
	}
}

// The fencing flags reach the pool's configuration: a hostid given or
// derived from the node's name, never both; the same-host lock always.
func TestConfigFencing(t *testing.T) {
	cfg, err := parseServerFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	pc := cfg.poolConfig(nil)
	if pc.HostID != 0 || pc.ForceImport || !pc.Exclusive || pc.HostIDFile != zfs.DefaultHostIDFile {
		t.Errorf("defaults: %+v", pc)
	}

	cfg, err = parseServerFlags(t, "--hostid=0x00c0ffee", "--force-import", "--hostid-file=/host/etc/hostid")
	if err != nil {
		t.Fatal(err)
	}
	if pc := cfg.poolConfig(nil); pc.HostID != 0xc0ffee || !pc.ForceImport || pc.HostIDFile != "/host/etc/hostid" {
		t.Errorf("--hostid: %+v", pc)
	}

	cfg, err = parseServerFlags(t, "--hostid-from=node-a")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.poolConfig(nil).HostID, zfs.HostIDFromName("node-a"); got != want || got == 0 {
		t.Errorf("--hostid-from: %08x, want %08x", got, want)
	}

	for _, args := range [][]string{
		{"--hostid=1", "--hostid-from=node-a"},
		{"--hostid=0"},
		{"--hostid=node-a"},
		{"--hostid=123456789"},
		{"--hostid-from=node-a", "--hostid-file=etc/hostid"},
	} {
		if _, err := parseServerFlags(t, args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
