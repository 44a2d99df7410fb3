package mounter

import (
	"errors"
	"testing"
)

func TestNFSSource(t *testing.T) {
	good := []struct {
		vol  Volume
		want string
	}{
		{Volume{Address: "10.96.0.12", Export: "/dots/pvc-1"}, "10.96.0.12:/dots/pvc-1"},
		{Volume{Address: "fd00::12", Export: "/dots/pvc-1"}, "[fd00::12]:/dots/pvc-1"},
		{Volume{Address: "[fd00:0::12]", Export: "/dots/pvc-1"}, "[fd00::12]:/dots/pvc-1"},
		{Volume{Address: "dots-server-a.dots.svc.cluster.local", Export: "/v", Port: 2049}, "dots-server-a.dots.svc.cluster.local:/v"},
		{Volume{Address: "127.0.0.1", Export: "/dots/a/b_c.d", Port: 20490}, "127.0.0.1:/dots/a/b_c.d"},
	}
	for _, tc := range good {
		got, err := tc.vol.NFSSource()
		if err != nil || got != tc.want {
			t.Errorf("%+v.NFSSource() = %q, %v; want %q", tc.vol, got, err, tc.want)
		}
	}
	bad := []Volume{
		{Address: "", Export: "/v"},
		{Address: "10.0.0.1:2049", Export: "/v"},
		{Address: "[10.0.0.1]", Export: "/v"},
		{Address: "host name", Export: "/v"},
		{Address: "-host", Export: "/v"},
		{Address: "host,vers=3", Export: "/v"},
		{Address: "10.0.0.1", Export: ""},
		{Address: "10.0.0.1", Export: "/"},
		{Address: "10.0.0.1", Export: "dots/v"},
		{Address: "10.0.0.1", Export: "/dots/../etc"},
		{Address: "10.0.0.1", Export: "/dots/v/"},
		{Address: "10.0.0.1", Export: "/dots/a,b"},
		{Address: "10.0.0.1", Export: "/dots/a b"},
		{Address: "10.0.0.1", Export: "/dots/v", Port: 70000},
	}
	for _, v := range bad {
		if got, err := v.NFSSource(); !errors.Is(err, ErrInvalidVolume) {
			t.Errorf("%+v.NFSSource() = %q, %v; want ErrInvalidVolume", v, got, err)
		}
	}
}
