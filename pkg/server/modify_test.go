package server

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/nfs"
)

// TestModifySquashReexports: a squashing change reaches the export at
// once, and ControllerGetVolume reports it; a refused request touches
// neither the pool nor the export.
func TestModifySquashReexports(t *testing.T) {
	s, pool, exp := newPublishServer(t, AccessClients)
	ctx := context.Background()
	before := exportOfVol(t, exp)
	_, err := s.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: "vol-1",
		MutableParameters: map[string]string{"squash": "all", "anonUID": "1000", "atime": "bogus"}})
	if status.Code(ErrorCodes.Status(err)) != codes.InvalidArgument {
		t.Fatalf("a bad atime among squash changes: %v, want InvalidArgument", err)
	}
	if e := exportOfVol(t, exp); e.Squash != before.Squash || e.AnonUID != before.AnonUID {
		t.Errorf("a refused modify changed the export: %+v, was %+v", e, before)
	}
	if v, _ := pool.GetVolume(ctx, "vol-1"); v.Squash == api.SquashAll {
		t.Error("a refused modify changed the volume's squashing")
	}

	if _, err := s.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: "vol-1",
		MutableParameters: map[string]string{"squash": "all", "anonUID": "1000", "anonGID": "2000"}}); err != nil {
		t.Fatal(err)
	}
	if e := exportOfVol(t, exp); e.Squash != nfs.SquashAll || e.AnonUID != 1000 || e.AnonGID != 2000 {
		t.Errorf("export after squash=all anon 1000:2000: %+v", e)
	}
	got, err := s.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "vol-1"})
	if err != nil {
		t.Fatal(err)
	}
	vc := got.GetVolume().GetVolumeContext()
	if vc[api.ContextParamPrefix+"squash"] != "all" || vc[api.ContextParamPrefix+"anonUID"] != "1000" || vc[api.ContextParamPrefix+"anonGID"] != "2000" {
		t.Errorf("ControllerGetVolume context %v: want the new squashing", vc)
	}
}
