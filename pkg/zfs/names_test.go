package zfs

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	good := []string{"a", "pvc-0b1c", "A.b_c:d-e", "0abc", strings.Repeat("x", MaxNameLen)}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v", n, err)
		}
	}
	bad := []string{"", "a/b", "a@b", "a..b", "..", ".a", "_a", "-a", "a b", "a;b", "$(x)", "a`b`",
		"a|b", "a&b", "a\nb", "a\tb", "é", "a*", "a'b", `a"b`, "a\\b", strings.Repeat("x", MaxNameLen+1)}
	for _, n := range bad {
		if err := ValidateName(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalid", n, err)
		}
	}
}

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

func TestRoundCapacity(t *testing.T) {
	const mib = CapacityGranularity
	cases := map[int64]int64{
		1:                   mib,
		mib - 1:             mib,
		mib:                 mib,
		mib + 1:             2 * mib,
		10 << 30:            10 << 30,
		(10 << 30) + 1:      (10 << 30) + mib,
		math.MaxInt64:       math.MaxInt64 - math.MaxInt64%mib,
		math.MaxInt64 - mib: math.MaxInt64 - math.MaxInt64%mib,
	}
	for in, want := range cases {
		if got := RoundCapacity(in); got != want {
			t.Errorf("RoundCapacity(%d) = %d, want %d", in, got, want)
		}
		if got := RoundCapacity(in); got%mib != 0 || got < 0 {
			t.Errorf("RoundCapacity(%d) = %d is not a positive multiple", in, got)
		}
	}
	for _, c := range []int64{0, -1, math.MinInt64} {
		if err := validateCapacity(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("validateCapacity(%d) = %v", c, err)
		}
	}
}

func TestInternalNames(t *testing.T) {
	a, err := internalName(cloneSnapPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := internalName(cloneSnapPrefix)
	if a == b || !isInternalSnapshot(a) || ValidateName(a) == nil {
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

func TestIDFor(t *testing.T) {
	short := "pvc-0123456789abcdef"
	if IDFor(short) != short {
		t.Fatalf("IDFor(%q) = %q, want the name itself", short, IDFor(short))
	}
	long := strings.Repeat("a", MaxNameLen)
	id := IDFor(long)
	if id == long || len(id) > MaxIDLen || ValidateID(id) != nil {
		t.Fatalf("IDFor(long) = %q: want a valid hashed id of at most %d bytes", id, MaxIDLen)
	}
	if IDFor(long) != id || IDFor(long[:MaxNameLen-1]+"b") == id {
		t.Fatal("IDFor must be deterministic and tell names apart")
	}
	if ValidateName(id) == nil {
		t.Fatalf("hashed id %q must not be accepted as a request name", id)
	}
	if isInternalSnapshot(id) {
		t.Fatalf("hashed id %q taken for an internal snapshot", id)
	}
	for _, bad := range []string{strings.Repeat("b", MaxIDLen+1), "_hxyz", "_vc-0011", ""} {
		if ValidateID(bad) == nil {
			t.Errorf("ValidateID(%q) accepted", bad)
		}
	}
}
