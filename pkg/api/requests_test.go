package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func mountCap() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}}
}

func TestParseCreateVolume(t *testing.T) {
	long := strings.Repeat("v", MaxNameLen)
	req := &csi.CreateVolumeRequest{Name: long, VolumeCapabilities: mountCap(),
		Parameters:          map[string]string{"thick": "true", "compression": "on"},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "s/x"}}}}
	cv, err := ParseCreateVolume(req, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if cv.ID != IDFor(long) || cv.Capacity != 1<<30 || !cv.DefaultCapacity || !cv.Params.Thick ||
		cv.Source != (Source{Kind: SourceSnapshot, ID: "s/x"}) {
		t.Fatalf("ParseCreateVolume = %+v", cv)
	}
	req.CapacityRange = &csi.CapacityRange{RequiredBytes: 5 << 20}
	if cv, _ := ParseCreateVolume(req, 1<<30); cv.Capacity != 5<<20 || cv.DefaultCapacity {
		t.Fatalf("with a range: %+v", cv)
	}

	block := []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}
	for name, c := range map[string]struct {
		req  *csi.CreateVolumeRequest
		want error
	}{
		"no name":        {&csi.CreateVolumeRequest{VolumeCapabilities: mountCap()}, ErrInvalid},
		"bad name":       {&csi.CreateVolumeRequest{Name: "a/b", VolumeCapabilities: mountCap()}, ErrInvalid},
		"no capability":  {&csi.CreateVolumeRequest{Name: "a"}, ErrUnsupported},
		"block":          {&csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: block}, ErrUnsupported},
		"unknown param":  {&csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: mountCap(), Parameters: map[string]string{"x": "y"}}, ErrInvalid},
		"range":          {&csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: mountCap(), CapacityRange: &csi.CapacityRange{RequiredBytes: 2, LimitBytes: 1}}, ErrOutOfRange},
		"empty source":   {&csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: mountCap(), VolumeContentSource: &csi.VolumeContentSource{}}, ErrInvalid},
		"no snapshot id": {&csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: mountCap(), VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{}}}}, ErrInvalid},
	} {
		if _, err := ParseCreateVolume(c.req, 1<<30); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
}

func TestConfirm(t *testing.T) {
	ok := Confirm(&csi.ValidateVolumeCapabilitiesRequest{VolumeCapabilities: mountCap(), Parameters: map[string]string{"atime": "off"}})
	if ok.GetConfirmed() == nil || ok.GetConfirmed().GetParameters()["atime"] != "off" {
		t.Fatalf("not confirmed: %v", ok)
	}
	bad := Confirm(&csi.ValidateVolumeCapabilitiesRequest{VolumeCapabilities: mountCap(), Parameters: map[string]string{"x": "y"}})
	if bad.GetConfirmed() != nil || bad.GetMessage() == "" {
		t.Fatalf("unknown parameter confirmed: %v", bad)
	}
}
