package api

import (
	"errors"
	"strings"
	"testing"
)

func TestNodeIDRoundTrip(t *testing.T) {
	id, err := NewNodeID("node-1.example", []string{"10.0.0.5", "fd00::5"})
	if err != nil {
		t.Fatal(err)
	}
	if got := id.String(); got != "node-1.example@10.0.0.5,fd00::5" {
		t.Fatalf("String() = %q", got)
	}
	back, err := ParseNodeID(id.String())
	if err != nil || back.Name != "node-1.example" || len(back.Addresses) != 2 {
		t.Fatalf("ParseNodeID = %+v, %v", back, err)
	}
}

func TestNewNodeIDRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		name  string
		addrs []string
	}{
		{"n", []string{"10.0.0.300"}},
		{"n", []string{"example.com"}},
		{"bad name", []string{"10.0.0.1"}},
		{strings.Repeat("n", 250), []string{"10.0.0.1"}}, // no room for the address
		{"n", []string{"0.0.0.0"}},
	} {
		if _, err := NewNodeID(c.name, c.addrs); err == nil {
			t.Errorf("NewNodeID(%q, %v) succeeded", c.name, c.addrs)
		}
	}
}

func TestParseNodeIDHostile(t *testing.T) {
	for _, c := range []struct {
		in   string
		want error
	}{
		{"", ErrInvalid},
		{strings.Repeat("a", 257), ErrInvalid},
		{"n@10.0.0.1\n", ErrInvalid},
		{"n;x@10.0.0.1", ErrInvalid},
		{"n@10.0.0.1 ,10.0.0.2", ErrInvalid},
		{"n@10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5", ErrInvalid},
		{"some-fake-node-id", ErrUnknownNode},
		{"n@", ErrUnknownNode},
		{"n@10.0.0.0/8", ErrInvalid}, // a CIDR would admit a network
		{"n@*", ErrInvalid},
		{"n@fe80::1%eth0", ErrInvalid},
		{"n@localhost", ErrUnknownNode},
		{"n@224.0.0.1", ErrUnknownNode},
		{"n@::", ErrUnknownNode},
	} {
		_, err := ParseNodeID(c.in)
		if !errors.Is(err, c.want) {
			t.Errorf("ParseNodeID(%q) = %v, want %v", c.in, err, c.want)
		}
	}
}

func TestParseNodeIDNormalises(t *testing.T) {
	id, err := ParseNodeID("@::ffff:10.0.0.1,10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if len(id.Addresses) != 1 || id.Addresses[0].String() != "10.0.0.1" {
		t.Fatalf("addresses = %v, want [10.0.0.1]", id.Addresses)
	}
}

// FuzzParseNodeID: whatever is accepted formats back to a node ID that
// parses to the same addresses, and carries nothing an exports file or a
// ZFS property could misread.
func FuzzParseNodeID(f *testing.F) {
	for _, s := range []string{"n@10.0.0.1", "n@10.0.0.1,fd00::1", "@::ffff:1.2.3.4", "x", "n@1.2.3.4;x", "n@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseNodeID(s)
		if err != nil {
			return
		}
		if len(id.Addresses) == 0 || !nodeIDChars.MatchString(id.String()) {
			t.Fatalf("%q parsed to %+v", s, id)
		}
		back, err := ParseNodeID(id.String())
		if err != nil || len(back.Addresses) != len(id.Addresses) {
			t.Fatalf("%q -> %q -> %+v, %v", s, id.String(), back, err)
		}
		for i, a := range id.Addresses {
			if back.Addresses[i] != a || !a.IsValid() || a.Zone() != "" {
				t.Fatalf("%q: address %d %v -> %v", s, i, a, back.Addresses[i])
			}
		}
	})
}
