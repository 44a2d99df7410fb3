package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs"
)

// TestVolumeHealthFollowsThePool: while the pool is not ONLINE, every
// volume's health says so, naming the state; an unmounted volume keeps its
// own entry beside it.
func TestVolumeHealthFollowsThePool(t *testing.T) {
	s, pool, _, _ := newFakeServer(t)
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		if _, err := s.CreateVolume(ctx, createReq(n, 8<<20, nil, nil)); err != nil {
			t.Fatal(err)
		}
	}
	pool.unmount("b", errors.New("directory is not empty"))
	type entry struct {
		status csi.VolumeHealthErrorType
		reason string
	}
	check := func(state string, stateErr error, want map[string][]entry, inMessage string) {
		t.Helper()
		pool.setState(state, stateErr)
		list, err := s.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range list.GetEntries() {
			one, err := s.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: h.GetVolumeId()})
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range []*csi.VolumeHealth{h, one.GetVolumeHealth()} {
				w := want[got.GetVolumeId()]
				if len(got.GetHealthStatuses()) != len(w) {
					t.Fatalf("pool %s: %s has %v, want %v", state, got.GetVolumeId(), got.GetHealthStatuses(), w)
				}
				for i, e := range got.GetHealthStatuses() {
					if e.GetStatus() != w[i].status || e.GetReason() != w[i].reason {
						t.Errorf("pool %s: %s entry %d = %v, want %v", state, got.GetVolumeId(), i, e, w[i])
					}
					if w[i].reason != reasonNotMounted && !strings.Contains(e.GetMessage(), inMessage) {
						t.Errorf("pool %s: message %q does not say %q", state, e.GetMessage(), inMessage)
					}
				}
			}
		}
	}
	notMounted := entry{csi.VolumeHealthErrorType_INACCESSIBLE, reasonNotMounted}
	check(zfs.HealthOnline, nil, map[string][]entry{"b": {notMounted}}, "")
	degraded := entry{csi.VolumeHealthErrorType_DEGRADED, "PoolDegraded"}
	check(zfs.HealthDegraded, nil, map[string][]entry{"a": {degraded}, "b": {degraded, notMounted}}, "pool fake is DEGRADED")
	for state, reason := range map[string]string{zfs.HealthFaulted: "PoolFaulted", zfs.HealthSuspended: "PoolSuspended", zfs.HealthUnavail: "PoolUnavail"} {
		e := entry{csi.VolumeHealthErrorType_INACCESSIBLE, reason}
		check(state, nil, map[string][]entry{"a": {e}, "b": {e, notMounted}}, "pool fake is "+state)
	}
	unknown := entry{csi.VolumeHealthErrorType_DEGRADED, reasonPoolStateUnknown}
	check("", errors.New("zpool list: killed"), map[string][]entry{"a": {unknown}, "b": {unknown, notMounted}}, "zpool list: killed")
}

// TestUsedBytesInContext: listings and gets say what a volume holds; a
// create's context, which the PV records, does not.
func TestUsedBytesInContext(t *testing.T) {
	s, pool, _, _ := newFakeServer(t)
	ctx := context.Background()
	cr, err := s.CreateVolume(ctx, createReq("a", 8<<20, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cr.GetVolume().GetVolumeContext()[api.ContextUsedBytes]; ok {
		t.Errorf("CreateVolume's context carries %s: %v", api.ContextUsedBytes, cr.GetVolume().GetVolumeContext())
	}
	pool.mu.Lock()
	pool.vols["a"].Used = 123456
	pool.mu.Unlock()
	g, err := s.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "a"})
	if err != nil || g.GetVolume().GetVolumeContext()[api.ContextUsedBytes] != "123456" {
		t.Errorf("ControllerGetVolume: %v %v", g, err)
	}
	l, err := s.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil || len(l.GetEntries()) != 1 || l.GetEntries()[0].GetVolume().GetVolumeContext()[api.ContextUsedBytes] != "123456" {
		t.Errorf("ListVolumes: %v %v", l, err)
	}
}

// TestPluginInfoManifest: the manifest carries the pool's state and space
// as read now; when the pool does not answer, the server still identifies
// itself, without figures.
func TestPluginInfoManifest(t *testing.T) {
	s, pool, _, _ := newFakeServer(t)
	ctx := context.Background()
	pool.setState(zfs.HealthDegraded, nil)
	r, err := s.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	info, ok := api.ParsePoolInfo(r.GetManifest())
	if !ok || info.Pool != "fake" || info.Health != zfs.HealthDegraded || info.Available != 10<<30 || info.Size != 10<<30 || info.ReadAt.IsZero() {
		t.Errorf("manifest %v: %+v %v", r.GetManifest(), info, ok)
	}
	if r.GetManifest()[api.ManifestServer] != s.opts.Name || r.GetName() == "" {
		t.Errorf("identity lost: %v", r)
	}
	pool.setState("", errors.New("zpool hung"))
	r, err = s.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := api.ParsePoolInfo(r.GetManifest()); ok || r.GetManifest()[api.ManifestServer] != s.opts.Name {
		t.Errorf("manifest without a pool: %v", r.GetManifest())
	}
}
