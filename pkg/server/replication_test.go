package server

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs"
)

// fakeReplication holds back the names in held and reports one lagging
// replica.
type fakeReplication struct {
	held map[string]bool
	why  string
}

func (f *fakeReplication) Held(name string) bool { return f.held[name] }
func (f *fakeReplication) Status(v *zfs.Volume) ([]api.ReplicaStatus, string) {
	return []api.ReplicaStatus{{Peer: v.Replicas[0], LagSeconds: 42}}, f.why
}
func (f *fakeReplication) ReplicaCount(context.Context) (int, error) { return 3, nil }

// A held replicated primary is never exported (start-up, a CSI call that
// re-exports, the reconciler) until the manager lets it go; a replicated
// primary reports its generation, replicas and lag.
func TestReplicationWiring(t *testing.T) {
	s, pool, exp, _ := newFakeServer(t)
	ctx := context.Background()
	// The controller's replication parameters are accepted and ignored.
	params := map[string]string{api.ParamReplicas: "2", api.ParamReplicationInterval: "5s"}
	for _, n := range []string{"held", "free"} {
		if _, err := s.CreateVolume(ctx, createReq(n, 8<<20, params, nil)); err != nil {
			t.Fatalf("create with replication parameters: %v", err)
		}
	}
	peer := api.Peer{Server: "b", Address: "b:7070"}
	for _, n := range []string{"held", "free"} {
		pool.vols[n].Replicas, pool.vols[n].Generation = []api.Peer{peer}, 4
	}
	repl := &fakeReplication{held: map[string]bool{"held": true}}
	s.SetReplication(repl)

	if _, _, err := s.RestoreExports(ctx); err != nil {
		t.Fatal(err)
	}
	ids := exportIDs(exp)
	if slices.Contains(ids, pool.vols["held"].ExportID) || !slices.Contains(ids, pool.vols["free"].ExportID) {
		t.Fatalf("exports after a start %v: the held volume must be left out, the other served", ids)
	}
	_, err := s.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: "held", MutableParameters: map[string]string{api.ParamThick: "false"}})
	if code(err) != codes.Unavailable || slices.Contains(exportIDs(exp), pool.vols["held"].ExportID) {
		t.Fatalf("a call re-exporting a held volume: %v (code %s), exports %v", err, code(err), exportIDs(exp))
	}
	if found := NewReconciler(s, nil).Reconcile(ctx); found[orphanUnexported] != 0 || slices.Contains(exportIDs(exp), pool.vols["held"].ExportID) {
		t.Fatalf("the reconciler: found %v, exports %v", found, exportIDs(exp))
	}
	h, err := s.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: "held"})
	if err != nil || len(h.GetVolumeHealth().GetHealthStatuses()) != 1 || h.GetVolumeHealth().GetHealthStatuses()[0].GetReason() != reasonNotConfirmed {
		t.Fatalf("health of the held volume: %v, %v", h, err)
	}

	repl.why = "replicas more than 3 intervals behind"
	got, err := s.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "free"})
	if err != nil {
		t.Fatal(err)
	}
	vc := got.GetVolume().GetVolumeContext()
	var reps []api.ReplicaStatus
	if err := json.Unmarshal([]byte(vc[api.ContextReplicas]), &reps); err != nil || len(reps) != 1 || reps[0].Server != "b" || reps[0].LagSeconds != 42 || vc[api.ContextGeneration] != "4" {
		t.Fatalf("context %v (%v)", vc, err)
	}
	h, err = s.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: "free"})
	if err != nil || len(h.GetVolumeHealth().GetHealthStatuses()) != 1 || h.GetVolumeHealth().GetHealthStatuses()[0].GetStatus() != csi.VolumeHealthErrorType_DEGRADED {
		t.Fatalf("health of a lagging replica's primary: %v, %v", h, err)
	}
	info, err := s.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil || info.GetManifest()[api.ManifestReplicas] != "3" {
		t.Fatalf("manifest %v, %v", info.GetManifest(), err)
	}
}
