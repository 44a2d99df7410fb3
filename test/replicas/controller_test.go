//go:build integration

package replicas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/replenv"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/driver"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// ctlPrefix names the pools of the controller-level tests.
const ctlPrefix = "dotsrc"

// ctlCluster starts n servers (c0, c1, ...) and the real controller over
// them (its registry probing every probe, replication clients of
// pkg/replication), the registry running until the test ends.
func ctlCluster(t *testing.T, n int, probe time.Duration) ([]*replenv.Server, *driver.ControllerServer, *registry.Registry) {
	t.Helper()
	return ctlClusterOf(t, ctlPrefix, n, probe, nil)
}

// ctlClusterOf is ctlCluster with pools named after prefix and server i
// given extra(i) flags (extra may be nil).
func ctlClusterOf(t *testing.T, prefix string, n int, probe time.Duration, extra func(i int) []string) ([]*replenv.Server, *driver.ControllerServer, *registry.Registry) {
	t.Helper()
	var servers []*replenv.Server
	var list []discovery.Server
	for i := range n {
		var flags []string
		if extra != nil {
			flags = extra(i)
		}
		s := replenv.Start(t, prefix, fmt.Sprintf("c%d", i), flags...)
		servers = append(servers, s)
		list = append(list, s.Discovery())
	}
	reg := registry.New(discovery.Static(list), testenv.ClientCreds(t), registry.Options{Interval: probe, ProbeTimeout: 2 * time.Second,
		Replication: driver.ReplicationClient}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); reg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	poll.Until(t, time.Minute, "every server healthy in the registry", func() error {
		if got := len(reg.List()); got != n {
			return fmt.Errorf("%d of %d servers known", got, n)
		}
		for _, m := range reg.List() {
			if !m.Status().Healthy {
				return fmt.Errorf("%s: %s", m.Name, m.Status().Error)
			}
		}
		return nil
	})
	c, err := driver.NewControllerServer(reg, placements.NewMemory(), driver.ControllerOptions{DefaultCapacity: 64 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return servers, c, reg
}

func byName(servers []*replenv.Server, name string) *replenv.Server {
	for _, s := range servers {
		if s.Name == name {
			return s
		}
	}
	panic("no server " + name)
}

// ctlVolume creates a volume through the controller and returns its
// cluster ID, its export and its primary's name.
func ctlVolume(t *testing.T, c *driver.ControllerServer, name string, params map[string]string) (id, export, primary string) {
	t.Helper()
	return ctlVolumeOf(t, c, name, 32<<20, params)
}

// ctlVolumeOf is ctlVolume of a given size.
func ctlVolumeOf(t *testing.T, c *driver.ControllerServer, name string, size int64, params map[string]string) (id, export, primary string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: params,
		CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}})
	if err != nil {
		t.Fatalf("creating %s through the controller: %v", name, err)
	}
	v := resp.GetVolume()
	return v.GetVolumeId(), v.GetVolumeContext()[api.ContextExport], v.GetVolumeContext()[api.ContextServer]
}

// where asks the controller for a volume: its primary now and export.
func where(t *testing.T, c *driver.ControllerServer, id string) (primary, export string, ctxt map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		t.Fatalf("ControllerGetVolume %s: %v", id, err)
	}
	vc := resp.GetVolume().GetVolumeContext()
	if got := resp.GetVolume().GetVolumeId(); got != id {
		t.Fatalf("ControllerGetVolume %s answered ID %s", id, got)
	}
	return vc[api.ContextServer], vc[api.ContextExport], vc
}

// jsonList decodes a JSON list of a volume context into v; false when it
// is missing, malformed or empty.
func jsonList[T any](s string, v *[]T) bool {
	return s != "" && json.Unmarshal([]byte(s), v) == nil && len(*v) > 0
}

// readSum reads a file through a server's export and checksums it.
func readSum(t *testing.T, s *replenv.Server, export, name string) string {
	t.Helper()
	b, err := readNFS(t, s, export, name)
	if err != nil {
		t.Fatalf("reading %s of %s through %s: %v", name, export, s.Name, err)
	}
	return replenv.Sum(b)
}

// TestControllerDrain: volumes with data on one server (unreplicated, and
// some with a replica elsewhere), and replicas it holds of others'
// volumes; the controller drains it: every volume is readable on another
// server with identical checksums (the writes since the last interval
// too), keeps its number of copies and its ID, and the drained server
// holds nothing. Prints the time per volume.
func TestControllerDrain(t *testing.T) {
	n := 20
	if testing.Short() {
		n = 6
	}
	servers, c, _ := ctlCluster(t, 3, time.Second)
	// A volume on c1 with a replica: the server holding that replica is
	// the one drained, so it holds a replica of another's volume too.
	heldID, _, heldPrimary := ctlVolume(t, c, "drain-held", map[string]string{api.ParamServer: servers[1].Name,
		api.ParamReplicas: "2", api.ParamReplicationInterval: interval().String()})
	_, _, hc := where(t, c, heldID)
	var cands []api.Candidate
	if !jsonList(hc[api.ContextServers], &cands) || len(cands) != 2 {
		t.Fatalf("candidates of %s: %v", heldID, hc)
	}
	src := byName(servers, cands[1].Server)
	type vol struct{ id, export, sum string }
	var vols []vol
	var bytes int64
	for i := range n {
		params := map[string]string{api.ParamServer: src.Name}
		if i%4 == 3 {
			params[api.ParamReplicas], params[api.ParamReplicationInterval] = "2", interval().String()
		}
		id, export, primary := ctlVolume(t, c, fmt.Sprintf("drain-%02d", i), params)
		if primary != src.Name {
			t.Fatalf("%s placed on %s, pinned to %s", id, primary, src.Name)
		}
		data := replenv.RandomData(t, 256<<10+i*4096)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := src.NFS().WriteFile(ctx, export, "data", data); err != nil {
			t.Fatalf("writing %s: %v", id, err)
		}
		cancel()
		bytes += int64(len(data))
		vols = append(vols, vol{id, export, replenv.Sum(data)})
	}

	start := time.Now()
	var events []api.MoveEvent
	if err := c.Drain(context.Background(), src.Name, func(ev api.MoveEvent) { events = append(events, ev) }); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	last := events[len(events)-1]
	if last.Kind != api.MoveDone || last.Failed != 0 || last.Done != n+1 {
		for _, ev := range events {
			t.Logf("%+v", ev)
		}
		t.Fatalf("drain ended %+v, want %d done and none failed", last, n+1)
	}
	for i, v := range vols {
		primary, export, vc := where(t, c, v.id)
		if primary == src.Name || primary == "" {
			t.Fatalf("%s still served by %q", v.id, primary)
		}
		if got := readSum(t, byName(servers, primary), export, "data"); got != v.sum {
			t.Errorf("%s on %s: checksum %s, wrote %s", v.id, primary, got, v.sum)
		}
		var reps []api.ReplicaStatus
		if i%4 == 3 && !jsonList(vc[api.ContextReplicas], &reps) {
			t.Errorf("%s: a replicated volume lost its replica: context %v", v.id, vc)
		}
	}
	if primary, _, _ := where(t, c, heldID); primary != heldPrimary {
		t.Errorf("%s moved from %s to %s; only its replica should have", heldID, heldPrimary, primary)
	}
	// The drained server holds nothing: no volume listed, no replica.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := src.CSI().ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetEntries()) != 0 {
		t.Errorf("the drained server still lists %d volumes", len(list.GetEntries()))
	}
	info, err := src.Identity().GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r := info.GetManifest()[api.ManifestReplicas]; r != "0" {
		t.Errorf("the drained server holds %s replicas", r)
	}
	fmt.Printf("drain: volumes=%d replicas_replaced=1 data_bytes=%d seconds=%.1f per_volume_s=%.2f\n",
		n, bytes, took.Seconds(), took.Seconds()/float64(n+1))
}

// TestControllerPromote: a manual promotion through the controller with
// the primary up hands over (a write just before it is on the new
// primary), the volume's ID routes to the new primary, which reports
// generation 2, takes new writes, and the old server no longer exports it.
func TestControllerPromote(t *testing.T) {
	servers, c, _ := ctlCluster(t, 2, time.Second)
	id, export, primary := ctlVolume(t, c, "promote-me", map[string]string{api.ParamReplicas: "2", api.ParamReplicationInterval: interval().String()})
	old := byName(servers, primary)
	data := replenv.RandomData(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := old.NFS().WriteFile(ctx, export, "last-write", data); err != nil {
		t.Fatal(err)
	}
	res, err := c.Promote(ctx, id, "", driver.ReasonManual)
	if err != nil {
		t.Fatal(err)
	}
	if !res.HandedOver || res.From != primary || res.To == primary || res.Generation != 2 {
		t.Fatalf("promotion %+v", res)
	}
	now, export2, vc := where(t, c, id)
	if now != res.To || vc[api.ContextGeneration] != "2" {
		t.Fatalf("after the promotion: primary %s, context %v", now, vc)
	}
	promoted := byName(servers, now)
	if got := readSum(t, promoted, export2, "last-write"); got != replenv.Sum(data) {
		t.Errorf("the write before the promotion: checksum %s, wrote %s", got, replenv.Sum(data))
	}
	// The candidates name the new primary first, with its mountpoint of
	// the volume (local-bind mode), where the write is.
	var cands []api.Candidate
	if !jsonList(vc[api.ContextServers], &cands) || cands[0].Server != now || cands[0].LocalPath == "" {
		t.Fatalf("candidates after the promotion: %v", vc[api.ContextServers])
	}
	if b, err := os.ReadFile(filepath.Join(cands[0].LocalPath, "last-write")); err != nil || replenv.Sum(b) != replenv.Sum(data) {
		t.Errorf("the write at the new primary's local path %s: %v", cands[0].LocalPath, err)
	}
	if err := promoted.NFS().WriteFile(ctx, export2, "after", data); err != nil {
		t.Errorf("a write on the new primary: %v", err)
	}
	// Listed under the ID it was created with.
	list, err := c.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range list.GetEntries() {
		ids = append(ids, e.GetVolume().GetVolumeId())
	}
	if !slices.Contains(ids, id) {
		t.Errorf("ListVolumes after the promotion: %v, want %s among them", ids, id)
	}
	if old.Exported(t)[export] {
		t.Errorf("the old primary %s still exports %s", old.Name, export)
	}
	fmt.Printf("controller-promote: handed_over=%v generation=%d\n", res.HandedOver, res.Generation)
}

// TestControllerAutoPromote: with --promote-after, the primary's server
// stopped is promoted from once it has been unhealthy that long; the
// data synced before is served by the new primary. Prints how long from
// the stop to the promotion, against --promote-after.
func TestControllerAutoPromote(t *testing.T) {
	probe := 500 * time.Millisecond
	after := 3 * time.Second
	servers, c, _ := ctlCluster(t, 2, probe)
	id, export, primary := ctlVolume(t, c, "auto-promote", map[string]string{api.ParamReplicas: "2", api.ParamReplicationInterval: interval().String()})
	old := byName(servers, primary)
	var replica *replenv.Server
	for _, s := range servers {
		if s != old {
			replica = s
		}
	}
	data := replenv.RandomData(t, 512<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := old.NFS().WriteFile(ctx, export, "synced", data); err != nil {
		t.Fatal(err)
	}
	_, name, _ := api.ParseID(id)
	replenv.WaitSynced(t, replica, name, time.Now(), 30*interval())
	loop, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.AutoPromote(loop, after) }()
	t.Cleanup(func() { stop(); <-done })

	stopped := time.Now()
	old.Stop()
	poll.Until(t, after+time.Minute, "the volume promoted on "+replica.Name, func() error {
		gctx, gcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer gcancel()
		resp, err := c.ControllerGetVolume(gctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
		if err != nil {
			return err // the old primary's, until the promotion
		}
		if now := resp.GetVolume().GetVolumeContext()[api.ContextServer]; now != replica.Name {
			return errors.New("primary still " + now)
		}
		return nil
	})
	took := time.Since(stopped)
	if took < after {
		t.Errorf("promoted %s after the stop, before --promote-after %s", took, after)
	}
	_, export2, vc := where(t, c, id)
	if got := readSum(t, replica, export2, "synced"); got != replenv.Sum(data) {
		t.Errorf("synced data on the new primary: checksum %s, wrote %s", got, replenv.Sum(data))
	}
	if g, _ := strconv.Atoi(vc[api.ContextGeneration]); g != 2 {
		t.Errorf("generation %q, want 2", vc[api.ContextGeneration])
	}
	fmt.Printf("autopromote: promote_after_s=%.1f stop_to_promoted_s=%.1f overhead_s=%.1f\n",
		after.Seconds(), took.Seconds(), (took - after).Seconds())
}

// TestControllerRebalance: one server holds far more data than the other;
// a rebalance moves volumes (with their data, checksums equal) until the
// two are within the tolerance, never overshooting.
func TestControllerRebalance(t *testing.T) {
	servers, c, reg := ctlCluster(t, 2, time.Second)
	full := servers[0]
	sizes := []int{60 << 20, 60 << 20, 60 << 20}
	type vol struct{ id, sum string }
	var vols []vol
	for i, n := range sizes {
		id, export, _ := ctlVolumeOf(t, c, fmt.Sprintf("rebalance-%d", i), 128<<20, map[string]string{api.ParamServer: full.Name})
		data := replenv.RandomData(t, n)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if err := full.NFS().WriteFile(ctx, export, "data", data); err != nil {
			t.Fatalf("writing %s: %v", id, err)
		}
		cancel()
		vols = append(vols, vol{id, replenv.Sum(data)})
	}
	frac := func(name string) float64 {
		m, _ := reg.Get(name)
		st := m.Status()
		return float64(st.Used) / float64(st.Size)
	}
	// The pool's figures follow the writes once ZFS commits them.
	poll.Until(t, time.Minute, "the data counted in the full server's used space", func() error {
		if gap := frac(full.Name) - frac(servers[1].Name); gap <= api.RebalanceTolerance {
			return fmt.Errorf("gap %.3f", gap)
		}
		return nil
	})
	before := frac(full.Name) - frac(servers[1].Name)
	var moved []api.MoveEvent
	if err := c.Rebalance(context.Background(), func(ev api.MoveEvent) {
		if ev.Kind == api.MovePrimary || ev.Kind == api.MoveFailed {
			moved = append(moved, ev)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(moved) != 1 || moved[0].Kind != api.MovePrimary || moved[0].To != servers[1].Name {
		t.Fatalf("moves %+v, want one volume to %s", moved, servers[1].Name)
	}
	for _, v := range vols {
		primary, export, _ := where(t, c, v.id)
		if got := readSum(t, byName(servers, primary), export, "data"); got != v.sum {
			t.Errorf("%s on %s: checksum %s, wrote %s", v.id, primary, got, v.sum)
		}
	}
	fmt.Printf("rebalance: moved=%d moved_bytes=%d gap_before=%.3f tolerance=%.2f\n", len(moved), moved[0].Bytes, before, api.RebalanceTolerance)
}
