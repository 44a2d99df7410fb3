package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs"
)

// TestManifestSummary: the manifest carries the index's counts, and with
// a pool monitor the pool's state as the monitor last read it (ReadAt
// says when), without asking zpool.
func TestManifestSummary(t *testing.T) {
	s, pool, _, _ := newFakeServer(t)
	ctx := context.Background()
	for i, size := range []int64{64 << 20, 128 << 20} {
		if _, err := s.CreateVolume(ctx, createReq(fmt.Sprintf("v%d", i), size, nil, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: "v0"}); err != nil {
		t.Fatal(err)
	}
	stats := &fakeStatsPool{stats: zfs.PoolStats{Health: zfs.HealthDegraded, Used: 5, Available: 10}}
	m, _, clock := newTestMonitor(t, stats, OpsConfig{}, nil)
	s.SetPoolMonitor(m)
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// zpool hangs: the manifest does not ask it.
	pool.setState("", errors.New("zpool hung"))
	r, err := s.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	info, ok := api.ParsePoolInfo(r.GetManifest())
	want := api.PoolInfo{Pool: "fake", Health: zfs.HealthDegraded, Size: 10 << 30, Available: 10 << 30, ReadAt: clock.now(),
		HasCounts: true, Volumes: 2, Snapshots: 1, Provisioned: 192 << 20}
	if !ok || info != want {
		t.Errorf("manifest %v:\n%+v\nwant %+v", r.GetManifest(), info, want)
	}
}

// TestListingsResumeAtTheirToken: pages continue after the key their
// token names, so a pass reads each entry once, also when entries go
// between pages; a filtered snapshot listing pages the same way.
func TestListingsResumeAtTheirToken(t *testing.T) {
	s, _, _, _ := newFakeServer(t)
	ctx := context.Background()
	for i := range 7 {
		if _, err := s.CreateVolume(ctx, createReq(fmt.Sprintf("v%d", i), 64<<20, nil, nil)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		r, err := s.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 3, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range r.GetEntries() {
			got = append(got, e.GetVolume().GetVolumeId())
		}
		if pages == 0 {
			// The next page starts after v2 even when v2 is gone.
			if _, err := s.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "v2"}); err != nil {
				t.Fatal(err)
			}
		}
		if token = r.GetNextToken(); token == "" {
			break
		}
	}
	if want := []string{"v0", "v1", "v2", "v3", "v4", "v5", "v6"}; !slices.Equal(got, want) {
		t.Errorf("volumes in pages = %v, want %v", got, want)
	}
	if _, err := s.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: "v3"}); code(err).String() != "Aborted" {
		t.Errorf("a token this server did not make: %v", err)
	}

	for i := range 5 {
		src := "v" + fmt.Sprint(i%2)
		if _, err := s.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: fmt.Sprintf("s%d", i), SourceVolumeId: src}); err != nil {
			t.Fatal(err)
		}
	}
	got, token = nil, ""
	for {
		r, err := s.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: 2, SourceVolumeId: "v0", StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range r.GetEntries() {
			got = append(got, e.GetSnapshot().GetSnapshotId())
		}
		if token = r.GetNextToken(); token == "" {
			break
		}
	}
	var want []string
	for _, n := range []string{"s0", "s2", "s4"} {
		want = append(want, api.IDFor(n))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("v0's snapshots in pages = %v, want %v", got, want)
	}
}
