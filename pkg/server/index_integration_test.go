//go:build integration

package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
)

// TestReconcilerAdoptsChangesBehindTheServersBack: the server answers from
// its index; what someone does to the pool by hand shows in its answers
// after the next reconcile, and is counted.
func TestReconcilerAdoptsChangesBehindTheServersBack(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.ReconcileInterval = 200 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vol := s.mustCreate(ctx, createReq("hand", 64*mib, nil, nil))
	ds := s.cfg.Pool + "/dots/volumes/" + vol.GetVolumeId()
	testenv.Zfs(t, "snapshot", ds+"@by-hand")
	testenv.Zfs(t, "set", "refquota=100663296", ds)
	testenv.Zfs(t, "set", "dots:capacity=100663296", ds)

	poll.Until(t, time.Minute, "the server answers what the pool holds", func() error {
		snaps, err := s.ctrl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: vol.GetVolumeId()})
		if err != nil || len(snaps.GetEntries()) != 1 || snaps.GetEntries()[0].GetSnapshot().GetSnapshotId() != "by-hand" {
			return fmt.Errorf("snapshots: %v %v", snaps.GetEntries(), err)
		}
		g, err := s.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: vol.GetVolumeId()})
		if err != nil || g.GetVolume().GetCapacityBytes() != 96*mib {
			return fmt.Errorf("volume: %v %v", g.GetVolume(), err)
		}
		return nil
	})
	for kind, want := range map[string]float64{"snapshot_added": 1, "volume_changed": 1} {
		if got := metricValue(t, s.http, `dots_server_index_corrections_total{kind="`+kind+`"}`); got != want {
			t.Errorf("corrections of kind %s: %v, want %v", kind, got, want)
		}
	}
	r, err := s.ident.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info, ok := api.ParsePoolInfo(r.GetManifest()); !ok || !info.HasCounts || info.Volumes != 1 || info.Snapshots != 1 || info.Provisioned != 96*mib {
		t.Errorf("manifest %v: %+v", r.GetManifest(), info)
	}
}
