package zfs

import (
	"errors"
	"strings"
	"testing"

	"github.com/dots-csi/dots/pkg/api"
)

func TestValidatePoolName(t *testing.T) {
	for _, n := range []string{"dots", "dotsz-1a2b", "tank.a:b_c"} {
		if err := ValidatePoolName(n); err != nil {
			t.Errorf("ValidatePoolName(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"", "1pool", "-p", "a/b", "a b", "mirror1", "raidz", "log", "c0d0", strings.Repeat("p", MaxPoolNameLen+1)} {
		if err := ValidatePoolName(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidatePoolName(%q) = %v, want ErrInvalid", n, err)
		}
	}
}

func TestInternalNames(t *testing.T) {
	a, err := internalName(cloneSnapPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := internalName(cloneSnapPrefix)
	if a == b || !isInternalSnapshot(a) || api.ValidateName(a) == nil {
		t.Errorf("internal names %q, %q: must differ, be internal, and be refused as user names", a, b)
	}
	if isInternalSnapshot("snap") {
		t.Error("user name taken as internal")
	}
	if got := trashName("vol_5", 7); got != "vol_5_7" {
		t.Errorf("trashName = %q", got)
	}
	if lastComponent("p/dots/volumes/x") != "x" || lastComponent("p") != "p" {
		t.Error("lastComponent")
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Pool: "dots", Vdevs: []string{"/var/lib/dots/pool.img"}, Mountpoint: "/var/lib/dots/mnt", Create: true, FileSize: 1 << 30}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(*Config)) Config {
		c := good
		c.Vdevs = append([]string(nil), good.Vdevs...)
		f(&c)
		return c
	}
	bad := map[string]Config{
		"pool name":         mod(func(c *Config) { c.Pool = "a/b" }),
		"no vdevs":          mod(func(c *Config) { c.Vdevs = nil }),
		"relative vdev":     mod(func(c *Config) { c.Vdevs = []string{"pool.img"} }),
		"unclean vdev":      mod(func(c *Config) { c.Vdevs = []string{"/a/../b"} }),
		"duplicate vdev":    mod(func(c *Config) { c.Vdevs = []string{"/a", "/a"} }),
		"relative mount":    mod(func(c *Config) { c.Mountpoint = "mnt" }),
		"negative size":     mod(func(c *Config) { c.FileSize = -1 }),
		"too small a vdev":  mod(func(c *Config) { c.FileSize = 1 << 20 }),
		"reserved pool":     mod(func(c *Config) { c.Pool = "mirror" }),
		"pool with a space": mod(func(c *Config) { c.Pool = "a b" }),
	}
	for name, c := range bad {
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
	}
}
