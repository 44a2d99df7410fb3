package api

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func TestParseMutableParams(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		name  string
		in    map[string]string
		thick *bool
		props map[string]string
		why   string // "": accepted; else a word the error must hold
	}{
		{"empty", nil, nil, map[string]string{}, ""},
		{"all", map[string]string{"compression": "gzip", "recordsize": "16K", "atime": "off", "sync": "always", "thick": "true"},
			&yes, map[string]string{"compression": "gzip", "recordsize": "16K", "atime": "off", "sync": "always"}, ""},
		{"thin", map[string]string{"thick": "false"}, &no, map[string]string{}, ""},
		{"kubernetes metadata ignored", map[string]string{"csi.storage.k8s.io/pvc/name": "data"}, nil, map[string]string{}, ""},
		{"unknown key", map[string]string{"compresion": "on"}, nil, nil, "unknown mutable parameter"},
		{"bad thick", map[string]string{"thick": "yes please"}, nil, nil, "true or false"},
		{"empty property", map[string]string{"atime": ""}, nil, nil, "empty"},
		{"server", map[string]string{"server": "dots-server-2"}, nil, nil, "replicas or drain"},
		{"uid", map[string]string{"uid": "1000"}, nil, nil, "at creation"},
		{"gid", map[string]string{"gid": "1000"}, nil, nil, "at creation"},
		{"mode", map[string]string{"mode": "0770"}, nil, nil, "at creation"},
		{"bad squash", map[string]string{"squash": "some"}, nil, nil, "none, root or all"},
		{"bad anonUID", map[string]string{"anonUID": "-1"}, nil, nil, "anonUID"},
		{"bad anonGID", map[string]string{"anonGID": "x"}, nil, nil, "anonGID"},
		{"one bad key among good ones", map[string]string{"atime": "on", "server": "x"}, nil, nil, "replicas"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseMutableParams(c.in)
			if c.why != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.why) {
					t.Fatalf("error %v, want ErrInvalid saying %q", err, c.why)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got.Thick == nil) != (c.thick == nil) || (got.Thick != nil && *got.Thick != *c.thick) {
				t.Errorf("thick %v, want %v", got.Thick, c.thick)
			}
			if !maps.Equal(got.Properties, c.props) {
				t.Errorf("properties %v, want %v", got.Properties, c.props)
			}
		})
	}
}

func TestParseMutableAccess(t *testing.T) {
	m, err := ParseMutableParams(map[string]string{"squash": "all", "anonUID": "1000", "anonGID": "2000"})
	if err != nil {
		t.Fatal(err)
	}
	if !m.ChangesAccess() || *m.Squash != SquashAll || *m.AnonUID != 1000 || *m.AnonGID != 2000 {
		t.Errorf("parsed %+v", m)
	}
	if m, _ := ParseMutableParams(map[string]string{"atime": "on"}); m.ChangesAccess() {
		t.Error("atime alone changes access")
	}
}

// TestCreateWithMutableParams: a VolumeAttributesClass named at creation
// wins over the StorageClass, and is checked like a modify's.
func TestCreateWithMutableParams(t *testing.T) {
	req := &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}},
		Parameters:        map[string]string{"compression": "on", "thick": "true", "atime": "on"},
		MutableParameters: map[string]string{"compression": "gzip", "thick": "false"}}
	cv, err := ParseCreateVolume(req, MinCapacity)
	if err != nil {
		t.Fatal(err)
	}
	if cv.Params.Thick || !maps.Equal(cv.Params.Properties, map[string]string{"compression": "gzip", "atime": "on"}) {
		t.Errorf("params %+v: want the class's compression and thick over the StorageClass's", cv.Params)
	}
	req.MutableParameters = map[string]string{"server": "elsewhere"}
	if _, err := ParseCreateVolume(req, MinCapacity); !errors.Is(err, ErrInvalid) {
		t.Errorf("server among the mutable parameters at creation: %v, want ErrInvalid", err)
	}
}
