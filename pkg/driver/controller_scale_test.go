package driver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// fleet is fake servers under one controller.
type fleet []*fakeServer

// controller returns a controller of the fleet, probed once. Its probes
// wait up to a minute: a fleet of 100 shares the machine with the race
// detector, and a probe that times out would leave its call to be counted
// later.
func (fl fleet) controller(t testing.TB) *ControllerServer {
	t.Helper()
	var ds []discovery.Server
	for _, f := range fl {
		ds = append(ds, f.discovery())
	}
	return newTestControllerProbing(t, time.Minute, ds...)
}

// calls returns, by server, the calls answered since the last look (and
// forgets them); servers asked nothing are left out.
func (fl fleet) calls() map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, f := range fl {
		if c := f.takeCalls(); len(c) > 0 {
			out[f.name] = c
		}
	}
	return out
}

// onlyCall fails unless exactly one server answered exactly one call, of
// method; it returns that server.
func (fl fleet) onlyCall(t *testing.T, what, method string) string {
	t.Helper()
	got := fl.calls()
	for srv, c := range got {
		if len(got) == 1 && maps.Equal(c, map[string]int{method: 1}) {
			return srv
		}
	}
	t.Fatalf("%s asked %v, want one %s of one server", what, got, method)
	return ""
}

func newFleet(t testing.TB, n int, free int64) fleet {
	var fl fleet
	for i := range n {
		fl = append(fl, newFakeServer(t, fmt.Sprintf("srv-%d", i), free))
	}
	return fl
}

// TestCreateTouchesOneServer: a create, its retry, a clone, a snapshot
// each ask exactly one server one call (an existing name is found by its
// placement record, never by asking the servers); GetCapacity without a
// server asks none.
func TestCreateTouchesOneServer(t *testing.T) {
	fl := newFleet(t, 5, 100*gib)
	fl[3].volumes["made-before"] = gib // found by the import at start
	c := fl.controller(t)
	ctx := context.Background()
	fl.calls()

	resp, err := c.CreateVolume(ctx, createReq("pvc-1", gib, nil))
	if err != nil {
		t.Fatal(err)
	}
	first := fl.onlyCall(t, "a create", "CreateVolume")
	if _, err := c.CreateVolume(ctx, createReq("pvc-1", gib, nil)); err != nil {
		t.Fatal(err)
	}
	if again := fl.onlyCall(t, "a repeated create", "CreateVolume"); again != first {
		t.Fatalf("the repeated create went to %s, the first to %s", again, first)
	}
	if _, err := c.CreateVolume(ctx, createReq("made-before", gib, nil)); err != nil {
		t.Fatal(err)
	}
	if srv := fl.onlyCall(t, "a create of a name a server holds", "CreateVolume"); srv != "srv-3" {
		t.Fatalf("a create of srv-3's volume went to %s", srv)
	}
	clone := createReq("clone-1", gib, nil)
	clone.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: resp.GetVolume().GetVolumeId()}}}
	if _, err := c.CreateVolume(ctx, clone); err != nil {
		t.Fatal(err)
	}
	if srv := fl.onlyCall(t, "a clone", "CreateVolume"); srv != first {
		t.Fatalf("the clone went to %s, its source is on %s", srv, first)
	}
	if _, err := c.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: resp.GetVolume().GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	if srv := fl.onlyCall(t, "a snapshot", "CreateSnapshot"); srv != first {
		t.Fatalf("the snapshot went to %s, its volume is on %s", srv, first)
	}

	capResp, err := c.GetCapacity(ctx, &csi.GetCapacityRequest{VolumeCapabilities: mountCaps()})
	if err != nil {
		t.Fatal(err)
	}
	if got := fl.calls(); len(got) != 0 {
		t.Fatalf("GetCapacity asked %v, want no server", got)
	}
	// The registry's figures: each server's probed free space (the fakes
	// took what they created off theirs after the probe: not seen yet).
	if capResp.GetAvailableCapacity() != 500*gib || capResp.GetMaximumVolumeSize().GetValue() != 100*gib ||
		capResp.GetMinimumVolumeSize().GetValue() != api.MinCapacity {
		t.Fatalf("capacity %v", capResp)
	}
	if _, err := c.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"server": "srv-2"}}); err != nil {
		t.Fatal(err)
	}
	if srv := fl.onlyCall(t, "GetCapacity of one server", "GetCapacity"); srv != "srv-2" {
		t.Fatalf("GetCapacity of srv-2 asked %s", srv)
	}
	block := []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: mountCaps()[0].GetAccessMode()}}
	if r, err := c.GetCapacity(ctx, &csi.GetCapacityRequest{VolumeCapabilities: block}); err != nil || r.GetAvailableCapacity() != 0 {
		t.Fatalf("capacity for block volumes: %v %v, want none", r, err)
	}
}

// TestAccountingBetweenProbes: what the controller creates and deletes
// moves the registry's figures at once, so placement between probes sees
// it; retries are not counted twice.
func TestAccountingBetweenProbes(t *testing.T) {
	fl := newFleet(t, 2, 100*gib)
	c := fl.controller(t)
	ctx := context.Background()
	status := func(name string) registry.Status {
		m, _ := c.servers.Get(name)
		return m.Status()
	}
	thick := map[string]string{api.ParamThick: "true"}
	if _, err := c.CreateVolume(ctx, createReq("big", 60*gib, thick)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVolume(ctx, createReq("big", 60*gib, thick)); err != nil { // a retry
		t.Fatal(err)
	}
	st := status("srv-0")
	if st.Volumes != 1 || st.Provisioned != 60*gib || st.Available != 40*gib || st.Accounted != 1 {
		t.Fatalf("after a thick create on srv-0: %+v", st)
	}
	// srv-0 has 40 GiB free now, in the controller's view: the next goes
	// to srv-1 without a probe between.
	resp, err := c.CreateVolume(ctx, createReq("next", gib, nil))
	if err != nil {
		t.Fatal(err)
	}
	if srv := resp.GetVolume().GetVolumeContext()[api.ContextServer]; srv != "srv-1" {
		t.Fatalf("placed on %s, want srv-1 (the thick volume took srv-0's space)", srv)
	}
	if st := status("srv-1"); st.Volumes != 1 || st.Provisioned != gib || st.Available != 100*gib {
		t.Fatalf("after a thin create on srv-1: %+v", st)
	}
	for range 2 { // a delete is not accounted: it never counts twice
		if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "srv-0/big"}); err != nil {
			t.Fatal(err)
		}
	}
	if st := status("srv-0"); st.Volumes != 1 || st.Provisioned != 60*gib || st.Available != 40*gib || st.Accounted != 1 {
		t.Fatalf("after deleting srv-0's volume (twice): %+v, want the figures of before (conservative until the next probe)", st)
	}
	// The next probe reads the server's own figures.
	c.servers.Refresh(ctx)
	if st := status("srv-0"); st.Volumes != 0 || st.Provisioned != 0 || st.Available != 40*gib || st.Accounted != 0 {
		t.Fatalf("after the probe: %+v, want the fake's figures", st)
	}
}

// TestListingIsLinear: a full ListVolumes pass reads each volume once from
// its server, whatever the page size: the controller's token resumes each
// server where its last page ended.
func TestListingIsLinear(t *testing.T) {
	sizes := []int{0, 7, 13, 1, 5}
	fl := newFleet(t, len(sizes), gib)
	n := 0
	for i, size := range sizes {
		for j := range size {
			fl[i].volumes[fmt.Sprintf("v-%02d", j)] = gib
		}
		n += size
	}
	c := fl.controller(t)
	for _, max := range []int32{0, 1, 2, 3, 5, 7, 8, 26, 27, 100} {
		for _, f := range fl {
			f.listed = 0
		}
		fl.calls()
		got, pages := 0, 0
		for token := ""; ; {
			resp, err := c.ListVolumes(context.Background(), &csi.ListVolumesRequest{MaxEntries: max, StartingToken: token})
			if err != nil {
				t.Fatal(err)
			}
			got += len(resp.GetEntries())
			if pages++; pages > n+len(sizes)+1 {
				t.Fatalf("page size %d: paging does not end (%d pages, %d entries)", max, pages, got)
			}
			if token = resp.GetNextToken(); token == "" {
				break
			}
		}
		read, asked := 0, 0
		for _, f := range fl {
			read += f.listed
		}
		for _, c := range fl.calls() {
			asked += c["ListVolumes"]
		}
		if got != n || read != n {
			t.Errorf("page size %d: listed %d, servers read %d; want %d each", max, got, read, n)
		}
		// A page asks each server it crosses; a server ends in one page.
		if asked > pages+len(sizes) {
			t.Errorf("page size %d: %d server calls for %d pages over %d servers", max, asked, pages, len(sizes))
		}
	}
}

// scaleServers and scaleVolumes are the simulated cluster of the
// controller-scale figures: servers as in-process fakes over real gRPC
// with mutual TLS, each reporting that many volumes in its summary.
const (
	scaleServers = 100
	scaleVolumes = 10000
	scaleCreates = 200
)

func scaleFleet(t testing.TB) (fleet, *ControllerServer) {
	t.Helper()
	fl := newFleet(t, scaleServers, 1<<40)
	for _, f := range fl {
		f.more = scaleVolumes
	}
	return fl, fl.controller(t)
}

// TestControllerScale measures what the controller asks of the servers at
// 100 servers of 10,000 volumes: a probe round (two calls a server, no
// listing), its own readiness (nothing), a create (one call to one
// server), and the create's latency against a create sent straight to one
// server in the same run.
func TestControllerScale(t *testing.T) {
	fl, c := scaleFleet(t)
	ctx := context.Background()
	fl.calls()

	t0 := time.Now()
	c.servers.Refresh(ctx)
	round := time.Since(t0)
	calls := fl.calls()
	probeCalls, _ := totalCalls(calls)
	listings := 0
	for _, byMethod := range calls {
		for method, n := range byMethod {
			if strings.HasPrefix(method, "List") {
				listings += n
			}
		}
	}
	if probeCalls != 2*scaleServers || listings != 0 {
		t.Fatalf("a probe round made %d calls, %d of them listings; want %d and none", probeCalls, listings, 2*scaleServers)
	}
	for _, m := range c.servers.List() {
		if st := m.Status(); !st.Healthy || st.Volumes != scaleVolumes {
			t.Fatalf("server %s: %+v", m.Name, st)
		}
	}
	if _, err := NewIdentityServer(true, ServersReady(c.servers)).Probe(ctx, &csi.ProbeRequest{}); err != nil {
		t.Fatal(err)
	}
	ownProbeCalls, _ := totalCalls(fl.calls())
	if ownProbeCalls != 0 {
		t.Fatalf("the controller's own Probe made %d calls to servers", ownProbeCalls)
	}

	var routed, direct []time.Duration
	createCalls, touched := 0, 0 // the most of any create
	for i := range scaleCreates {
		t0 := time.Now()
		if _, err := c.CreateVolume(ctx, createReq(fmt.Sprintf("pvc-%d", i), gib, nil)); err != nil {
			t.Fatal(err)
		}
		routed = append(routed, time.Since(t0))
		calls, servers := totalCalls(fl.calls())
		createCalls, touched = max(createCalls, calls), max(touched, servers)
	}
	if createCalls != 1 || touched != 1 {
		t.Fatalf("a create made up to %d calls to up to %d servers, want one call to one server", createCalls, touched)
	}
	m, _ := c.servers.Get(fl[0].name)
	for i := range scaleCreates {
		t0 := time.Now()
		if _, err := m.Controller.CreateVolume(ctx, createReq(fmt.Sprintf("direct-%d", i), gib, nil)); err != nil {
			t.Fatal(err)
		}
		direct = append(direct, time.Since(t0))
	}
	p50, p99, d50, d99 := percentile(routed, 50), percentile(routed, 99), percentile(direct, 50), percentile(direct, 99)
	fmt.Printf("controller-scale: servers=%d volumes_per_server=%d probe_calls_per_round=%d probe_listings=%d probe_round_ms=%.1f "+
		"controller_probe_calls=%d create_calls=%d create_servers_touched=%d create_p50_ms=%.2f create_p99_ms=%.2f "+
		"direct_create_p50_ms=%.2f direct_create_p99_ms=%.2f create_p50_ratio=%.2f create_p99_ratio=%.2f\n",
		scaleServers, scaleVolumes, probeCalls, listings, ms(round), ownProbeCalls, createCalls, touched, ms(p50), ms(p99), ms(d50), ms(d99),
		float64(p50)/float64(d50), float64(p99)/float64(d99))
}

// BenchmarkPlacement is the controller's own work for a create: the
// placement record's lookup and a placement over 100 servers' cached
// figures (no server is asked).
func BenchmarkPlacement(b *testing.B) {
	_, c := scaleFleet(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, found, err := c.placed(ctx, placements.Volume, fmt.Sprintf("pvc-%d", i)); err != nil || found {
			b.Fatal(found, err)
		}
		if _, err := c.place("", gib); err != nil {
			b.Fatal(err)
		}
	}
}

// totalCalls sums calls (by server, by method) and counts the servers.
func totalCalls(calls map[string]map[string]int) (n, servers int) {
	for _, byMethod := range calls {
		for _, c := range byMethod {
			n += c
		}
	}
	return n, len(calls)
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
