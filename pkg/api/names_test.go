package api

import (
	"errors"
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

func TestIDFor(t *testing.T) {
	short := "pvc-0123456789abcdef"
	if IDFor(short) != short {
		t.Fatalf("IDFor(%q) = %q, want the name itself", short, IDFor(short))
	}
	long := strings.Repeat("a", MaxNameLen)
	id := IDFor(long)
	if id == long || len(id) > MaxIDLen || ValidateID(id) != nil || !IsHashedID(id) {
		t.Fatalf("IDFor(long) = %q: want a valid hashed id of at most %d bytes", id, MaxIDLen)
	}
	if IDFor(long) != id || IDFor(long[:MaxNameLen-1]+"b") == id {
		t.Fatal("IDFor must be deterministic and tell names apart")
	}
	if ValidateName(id) == nil {
		t.Fatalf("hashed id %q must not be accepted as a request name", id)
	}
	for _, bad := range []string{strings.Repeat("b", MaxIDLen+1), "_hxyz", "_vc-0011", ""} {
		if ValidateID(bad) == nil {
			t.Errorf("ValidateID(%q) accepted", bad)
		}
	}
}

func TestServerNames(t *testing.T) {
	for _, n := range []string{"a", "dots-server-0", "s1", strings.Repeat("x", MaxServerNameLen)} {
		if err := ValidateServerName(n); err != nil {
			t.Errorf("ValidateServerName(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"", "-a", "a-", "A", "a_b", "a.b", strings.Repeat("x", MaxServerNameLen+1)} {
		if err := ValidateServerName(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateServerName(%q) = %v, want ErrInvalid", n, err)
		}
	}
}

func TestIsDNSName(t *testing.T) {
	for _, c := range []struct {
		name        string
		underscores bool
		want        bool
	}{
		{"dots-server-0.dots.svc.cluster.local", false, true},
		{"nfs.example.com.", false, true},
		{"_api._tcp.dots.svc", true, true},
		{"_api._tcp.dots.svc", false, false},
		{"a..b", true, false},
		{"-a.b", true, false},
		{"a b", true, false},
		{"", false, false},
		{strings.Repeat("a", 64) + ".b", false, false},
		{strings.Repeat("a.", 127) + "bc", false, false},
	} {
		if got := IsDNSName(c.name, c.underscores); got != c.want {
			t.Errorf("IsDNSName(%q, %v) = %v, want %v", c.name, c.underscores, got, c.want)
		}
	}
}
