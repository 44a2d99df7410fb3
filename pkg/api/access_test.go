package api

import (
	"errors"
	"io/fs"
	"testing"
)

func TestAccessParams(t *testing.T) {
	p, err := ParseParams(map[string]string{"squash": "root", "gid": "2000"})
	if err != nil {
		t.Fatal(err)
	}
	a := p.Access
	if a.Squash != SquashRoot || a.AnonUID != DefaultAnonID || a.AnonGID != DefaultAnonID {
		t.Fatalf("access = %+v", a)
	}
	o := a.RootOwner(a.Squash)
	if o.UID != DefaultAnonID || o.GID != 2000 || o.Mode != fs.ModeSetgid|0o775 {
		t.Fatalf("root owner = %+v, want anon uid, gid 2000, 2775", o)
	}
	if o := (Access{}).RootOwner(SquashNone); o.UID != 0 || o.GID != 0 || o.Mode != 0o755 {
		t.Fatalf("default owner without squash = %+v", o)
	}
	p, err = ParseParams(map[string]string{"squash": "all", "anonUID": "1000", "anonGID": "1001", "mode": "750", "uid": "7"})
	if err != nil {
		t.Fatal(err)
	}
	if o := p.Access.RootOwner(SquashAll); o.UID != 7 || o.GID != 1001 || o.Mode != 0o750 {
		t.Fatalf("root owner = %+v", o)
	}
}

func TestAccessParamsRefused(t *testing.T) {
	for _, kv := range [][2]string{
		{"squash", "no_root_squash"}, {"squash", ""}, {"anonUID", "-1"}, {"anonGID", "4294967295"}, {"uid", "x"},
		{"gid", "2147483648"}, {"mode", "777"}, {"mode", "8"}, {"mode ", "755"},
	} {
		if _, err := ParseParams(map[string]string{kv[0]: kv[1]}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s=%q: err = %v, want ErrInvalid", kv[0], kv[1], err)
		}
	}
	for _, v := range []string{"777", "0666", "1777", "17777", "-755", ""} {
		if _, err := ParseMode(v); err == nil {
			t.Errorf("ParseMode(%q) succeeded", v)
		}
	}
}

func TestModeRoundTrip(t *testing.T) {
	for _, v := range []string{"755", "2775", "1770", "700", "4750"} {
		m, err := ParseMode(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := FormatMode(m); got != v {
			t.Errorf("FormatMode(ParseMode(%s)) = %s", v, got)
		}
	}
}
