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
		{"n@10.0.0.0/8", ErrUnknownNode}, // a CIDR would admit a network
		{"n@*", ErrUnknownNode},
		{"n@fe80::1%eth0", ErrUnknownNode},
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
