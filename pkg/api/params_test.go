package api

import (
	"errors"
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		in   map[string]string
		want Params
		err  bool
	}{
		{"empty", nil, Params{Properties: map[string]string{}}, false},
		{"all", map[string]string{"server": "dots-server-1", "thick": "true", "compression": "lz4", "recordsize": "16K", "atime": "off", "sync": "standard"},
			Params{Server: "dots-server-1", Thick: true, Properties: map[string]string{"compression": "lz4", "recordsize": "16K", "atime": "off", "sync": "standard"}}, false},
		{"kubernetes metadata ignored", map[string]string{"csi.storage.k8s.io/pvc/name": "data"}, Params{Properties: map[string]string{}}, false},
		{"unknown key", map[string]string{"compresion": "on"}, Params{}, true},
		{"bad thick", map[string]string{"thick": "yes please"}, Params{}, true},
		{"empty server", map[string]string{"server": ""}, Params{}, true},
		{"empty property", map[string]string{"atime": ""}, Params{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseParams(c.in)
			if c.err {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("want ErrInvalid, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Server != c.want.Server || got.Thick != c.want.Thick || len(got.Properties) != len(c.want.Properties) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for k, v := range c.want.Properties {
				if got.Properties[k] != v {
					t.Fatalf("property %s = %q, want %q", k, got.Properties[k], v)
				}
			}
		})
	}
}

func TestWithoutServer(t *testing.T) {
	in := map[string]string{"server": "a", "atime": "off"}
	out := WithoutServer(in)
	if _, ok := out["server"]; ok || out["atime"] != "off" || in["server"] != "a" {
		t.Fatalf("WithoutServer(%v) = %v", in, out)
	}
}

func FuzzParseParams(f *testing.F) {
	f.Add("server", "dots-server-0", "thick", "true")
	f.Add("compression", "gzip-9", "csi.storage.k8s.io/pvc/name", "x")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		p, err := ParseParams(map[string]string{k1: v1, k2: v2})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		for k := range p.Properties {
			if !slices.Contains(zfsParams, k) {
				t.Fatalf("non-allow-listed property %q passed through", k)
			}
		}
	})
}

func TestParseReplication(t *testing.T) {
	p, err := ParseParams(nil)
	if err != nil || p.Replicas != 1 || p.ReplicationInterval != DefaultReplicationInterval {
		t.Fatalf("defaults: %+v %v", p, err)
	}
	p, err = ParseParams(map[string]string{ParamReplicas: "3", ParamReplicationInterval: "2s"})
	if err != nil || p.Replicas != 3 || p.ReplicationInterval.Seconds() != 2 {
		t.Fatalf("got %+v %v", p, err)
	}
	for _, bad := range []map[string]string{
		{ParamReplicas: "0"}, {ParamReplicas: "6"}, {ParamReplicas: "two"}, {ParamReplicas: ""},
		{ParamReplicationInterval: "500ms"}, {ParamReplicationInterval: "10"}, {ParamReplicationInterval: "-1s"},
	} {
		if _, err := ParseParams(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: want ErrInvalid, got %v", bad, err)
		}
	}
	fwd := WithoutServer(map[string]string{ParamServer: "s", ParamReplicas: "2", ParamReplicationInterval: "5s", ParamThick: "true"})
	if len(fwd) != 1 || fwd[ParamThick] != "true" {
		t.Fatalf("forwarded %v", fwd)
	}
}
