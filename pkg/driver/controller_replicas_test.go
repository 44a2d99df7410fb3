package driver

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/placements"
)

// movedHook records what the VolumeMoved hook was told.
type movedHook struct {
	mu    sync.Mutex
	moves []string
}

func (h *movedHook) VolumeMoved(_ context.Context, id, from, to string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.moves = append(h.moves, id+" "+from+">"+to)
	return nil
}

func (h *movedHook) took() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.moves)
}

func replParams(n string) map[string]string {
	return map[string]string{api.ParamReplicas: n, api.ParamReplicationInterval: "2s"}
}

func record(t *testing.T, c *ControllerServer, id string) placements.Record {
	t.Helper()
	rec, ok, err := c.placements.Lookup(context.Background(), placements.Volume, id)
	if err != nil || !ok {
		t.Fatalf("record of %s: %v %v", id, ok, err)
	}
	return rec
}

// TestReplicatedCreate: replicas go on distinct servers other than the
// primary, most free first; the record names them; the primary is told;
// the volume context lists every candidate, primary first; too few
// servers is ResourceExhausted with the counts; bad parameters are
// InvalidArgument.
func TestReplicatedCreate(t *testing.T) {
	a, b, c3 := newFakeServer(t, "srv-a", 10*gib, "other"), newFakeServer(t, "srv-b", 20*gib), newFakeServer(t, "srv-c", 30*gib)
	rc := newReplCluster(a, b, c3)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	resp, err := c.CreateVolume(ctx, createReq("pvc-r", gib, replParams("3")))
	if err != nil {
		t.Fatal(err)
	}
	rec := record(t, c, "pvc-r")
	if rec.Server != "srv-c" || !slices.Equal(rec.Replicas, []string{"srv-b", "srv-a"}) || rec.Interval != 2*time.Second {
		t.Fatalf("record %+v: want primary srv-c, replicas srv-b, srv-a (most free first), 2s", rec)
	}
	if resp.GetVolume().GetVolumeId() != "srv-c/pvc-r" {
		t.Errorf("id %q", resp.GetVolume().GetVolumeId())
	}
	var cands []api.Candidate
	if err := json.Unmarshal([]byte(resp.GetVolume().GetVolumeContext()[api.ContextServers]), &cands); err != nil {
		t.Fatal(err)
	}
	if len(cands) != 3 || cands[0].Server != "srv-c" || cands[0].Address != "10.0.0.c" || cands[1].Server != "srv-b" || cands[2].Server != "srv-a" {
		t.Errorf("candidates %+v", cands)
	}
	for _, s := range []string{"srv-a", "srv-b"} {
		if r := rc.copyOf(s, "pvc-r"); r == nil || r.role != api.RoleReplica {
			t.Errorf("%s: replica %+v", s, r)
		}
	}
	if p := rc.copyOf("srv-c", "pvc-r"); p == nil || len(p.replicas) != 2 || p.interval != 2*time.Second {
		t.Errorf("primary told %+v", p)
	}
	// A retry replicates where the first attempt did.
	if _, err := c.CreateVolume(ctx, createReq("pvc-r", gib, replParams("3"))); err != nil {
		t.Fatal(err)
	}
	if again := record(t, c, "pvc-r"); !again.Equal(rec) {
		t.Errorf("a retry changed the record: %+v", again)
	}
	_, err = c.CreateVolume(ctx, createReq("pvc-4", gib, replParams("4")))
	if code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "3 replicas") || !strings.Contains(err.Error(), "2 such") {
		t.Errorf("4 copies on 3 servers: %v", err)
	}
	if _, ok, _ := c.placements.Lookup(ctx, placements.Volume, "pvc-4"); ok {
		t.Error("a create refused for want of servers left a record")
	}
	for _, p := range []map[string]string{{api.ParamReplicas: "0"}, {api.ParamReplicationInterval: "100ms"}} {
		if _, err := c.CreateVolume(ctx, createReq("pvc-bad", gib, p)); code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v", p, err)
		}
	}
}

// TestPromoteHandsOver: with the primary answering, a promotion hands
// over first (no write lost), raises the generation, moves the record and
// tells the hook; every call of the volume's ID then goes to the new
// primary, under the ID it always had.
func TestPromoteHandsOver(t *testing.T) {
	a, b := newFakeServer(t, "srv-a", 20*gib), newFakeServer(t, "srv-b", 10*gib)
	rc := newReplCluster(a, b)
	hook := &movedHook{}
	c := rc.controller(t, ControllerOptions{VolumeMoved: hook})
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, createReq("pvc-p", gib, replParams("2"))); err != nil {
		t.Fatal(err)
	}
	rc.write("srv-a", "pvc-p", "written after the last interval")
	res, err := c.Promote(ctx, "srv-a/pvc-p", "", ReasonManual)
	if err != nil {
		t.Fatal(err)
	}
	if res.From != "srv-a" || res.To != "srv-b" || res.Generation != 2 || !res.HandedOver || !slices.Equal(res.Replicas, []string{"srv-a"}) {
		t.Fatalf("result %+v", res)
	}
	if p := rc.copyOf("srv-b", "pvc-p"); p.role != api.RolePrimary || p.gen != 2 || p.data != "written after the last interval" || p.latest != res.Snapshot {
		t.Errorf("new primary %+v", p)
	}
	if o := rc.copyOf("srv-a", "pvc-p"); o.role != api.RoleReplica {
		t.Errorf("old primary %+v", o)
	}
	if rec := record(t, c, "pvc-p"); rec.Server != "srv-b" || rec.Gen() != 2 || rec.ClusterID() != "srv-a/pvc-p" {
		t.Errorf("record %+v", rec)
	}
	if got := hook.took(); !slices.Equal(got, []string{"srv-a/pvc-p srv-a>srv-b"}) {
		t.Errorf("hook told %v", got)
	}
	if n := testutil.ToFloat64(c.metrics.promotions.WithLabelValues(ReasonManual)); n != 1 {
		t.Errorf("promotions{manual} = %v", n)
	}
	b.takeCalls()
	got, err := c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "srv-a/pvc-p"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetVolume().GetVolumeId() != "srv-a/pvc-p" || b.takeCalls()["ControllerGetVolume"] != 1 {
		t.Errorf("get after the move: %v", got.GetVolume())
	}
	var cands []api.Candidate
	_ = json.Unmarshal([]byte(got.GetVolume().GetVolumeContext()[api.ContextServers]), &cands)
	if len(cands) != 2 || cands[0].Server != "srv-b" {
		t.Errorf("candidates after the move %+v", cands)
	}
	// Back again: the generation keeps rising.
	if res, err = c.Promote(ctx, "srv-a/pvc-p", "srv-a", ReasonManual); err != nil || res.Generation != 3 || res.To != "srv-a" {
		t.Fatalf("second promotion %+v %v", res, err)
	}
	if _, err := c.Promote(ctx, "srv-a/pvc-p", "srv-x", ReasonManual); code(err) != codes.InvalidArgument {
		t.Errorf("promotion to a server without a replica: %v", err)
	}
	if _, err := c.CreateVolume(ctx, createReq("plain", gib, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Promote(ctx, "srv-a/plain", "", ReasonManual); code(err) != codes.FailedPrecondition {
		t.Errorf("promotion of an unreplicated volume: %v", err)
	}
	if _, err := c.Promote(ctx, "srv-a/none", "", ReasonManual); code(err) != codes.NotFound {
		t.Errorf("promotion of no volume: %v", err)
	}
}

// TestPromoteWithoutPrimary: a primary that does not answer is not waited
// for; the replica with the newest state wins, the generation is above
// every one seen, and the old primary is listed as a replica (it demotes
// itself when it comes back).
func TestPromoteWithoutPrimary(t *testing.T) {
	a, b, c3 := newFakeServer(t, "srv-a", 30*gib), newFakeServer(t, "srv-b", 20*gib), newFakeServer(t, "srv-c", 10*gib)
	rc := newReplCluster(a, b, c3)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, createReq("pvc-d", gib, replParams("3"))); err != nil {
		t.Fatal(err)
	}
	// srv-c holds a newer snapshot than srv-b, and a generation seen
	// elsewhere is higher than the record's.
	rc.mu.Lock()
	rc.copies["srv-b"]["pvc-d"].latestTime = rc.copies["srv-c"]["pvc-d"].latestTime.Add(-time.Minute)
	rc.copies["srv-b"]["pvc-d"].gen = 4
	rc.mu.Unlock()
	rc.stop("srv-a")
	c.servers.Refresh(ctx)
	res, err := c.Promote(ctx, "srv-a/pvc-d", "", ReasonManual)
	if err != nil {
		t.Fatal(err)
	}
	if res.HandedOver || res.To != "srv-c" || res.Generation != 5 || !slices.Equal(res.Replicas, []string{"srv-b", "srv-a"}) {
		t.Fatalf("result %+v", res)
	}
}

// TestAutoPromote: a replicated volume whose primary's server has been
// down for --promote-after is promoted (reason unhealthy); before that,
// nothing is.
func TestAutoPromote(t *testing.T) {
	a, b := newFakeServer(t, "srv-a", 20*gib), newFakeServer(t, "srv-b", 10*gib)
	rc := newReplCluster(a, b)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, createReq("pvc-auto", gib, replParams("2"))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVolume(ctx, createReq("plain", gib, map[string]string{api.ParamServer: "srv-a"})); err != nil {
		t.Fatal(err)
	}
	rc.stop("srv-a")
	c.servers.Refresh(ctx)
	m, _ := c.servers.Get("srv-a")
	since := m.Status().DownSince
	if since.IsZero() {
		t.Fatal("a server failing its probe has no DownSince")
	}
	c.autoPromoteOnce(ctx, time.Minute, since.Add(59*time.Second), &autoState{unknown: map[string]time.Time{}})
	if rec := record(t, c, "pvc-auto"); rec.Server != "srv-a" {
		t.Fatalf("promoted before --promote-after: %+v", rec)
	}
	c.autoPromoteOnce(ctx, time.Minute, since.Add(time.Minute), &autoState{unknown: map[string]time.Time{}})
	if rec := record(t, c, "pvc-auto"); rec.Server != "srv-b" || rec.Gen() != 2 {
		t.Fatalf("not promoted after --promote-after: %+v", rec)
	}
	if rec := record(t, c, "plain"); rec.Server != "srv-a" {
		t.Errorf("an unreplicated volume moved: %+v", rec)
	}
	if n := testutil.ToFloat64(c.metrics.promotions.WithLabelValues(ReasonUnhealthy)); n != 1 {
		t.Errorf("promotions{unhealthy} = %v", n)
	}
}

// TestDeleteReplicated: the primary is deleted and each replica dropped;
// a replica whose server does not answer stays in the record and the
// delete answers Unavailable until it answers or is declared gone.
func TestDeleteReplicated(t *testing.T) {
	a, b, c3 := newFakeServer(t, "srv-a", 30*gib), newFakeServer(t, "srv-b", 20*gib), newFakeServer(t, "srv-c", 10*gib)
	rc := newReplCluster(a, b, c3)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, createReq("pvc-x", gib, replParams("3"))); err != nil {
		t.Fatal(err)
	}
	rc.stop("srv-c")
	_, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "srv-a/pvc-x"})
	if code(err) != codes.Unavailable || !strings.Contains(err.Error(), "srv-c") {
		t.Fatalf("delete with a replica's server down: %v", err)
	}
	if rc.copyOf("srv-b", "pvc-x") != nil {
		t.Error("the answering replica was not dropped")
	}
	if rec := record(t, c, "pvc-x"); !slices.Equal(rec.Replicas, []string{"srv-c"}) {
		t.Errorf("record left %+v, want only the unanswered replica", rec)
	}
	if err := c.placements.Forget(ctx, "srv-c"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "srv-a/pvc-x"}); err != nil {
		t.Fatalf("delete once the server is declared gone: %v", err)
	}
	if _, ok, _ := c.placements.Lookup(ctx, placements.Volume, "pvc-x"); ok {
		t.Error("record left after the delete")
	}
}

// TestPromoteRefusedServesAgain: a manual promotion whose target refuses
// after the primary handed over leaves the old primary serving (a new
// generation), not nobody; the replica stays.
func TestPromoteRefusedServesAgain(t *testing.T) {
	a, b := newFakeServer(t, "srv-a", 20*gib), newFakeServer(t, "srv-b", 10*gib)
	rc := newReplCluster(a, b)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, createReq("pvc-s", gib, replParams("2"))); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	rc.refusePromote = map[string]bool{"srv-b": true}
	rc.mu.Unlock()
	_, err := c.Promote(ctx, "srv-a/pvc-s", "", ReasonManual)
	if err == nil || !strings.Contains(err.Error(), "srv-a serves it again") {
		t.Fatalf("refused promotion: %v", err)
	}
	if rec := record(t, c, "pvc-s"); rec.Server != "srv-a" || !slices.Equal(rec.Replicas, []string{"srv-b"}) || rec.Gen() != 2 {
		t.Errorf("record %+v", rec)
	}
	if p := rc.copyOf("srv-a", "pvc-s"); p.role != api.RolePrimary || p.gen != 2 {
		t.Errorf("old primary %+v", p)
	}
	if r := rc.copyOf("srv-b", "pvc-s"); r == nil || r.role != api.RoleReplica {
		t.Errorf("replica %+v", r)
	}
}

// listed is a discovery source whose list the test changes.
type listed struct {
	mu      sync.Mutex
	servers []discovery.Server
}

func (l *listed) Servers(context.Context) ([]discovery.Server, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.servers), nil
}

func (l *listed) set(servers ...discovery.Server) {
	l.mu.Lock()
	l.servers = servers
	l.mu.Unlock()
}

// TestAutoPromoteForgottenServer: a primary whose server failed and then
// left discovery for --forget-server-after (the registry dropped it) is
// promoted once it has been out of reach for --promote-after, counted
// from when it began failing; one on a server this controller never knew
// (forgotten before it started), from when it was first found unknown.
func TestAutoPromoteForgottenServer(t *testing.T) {
	a, b, c3 := newFakeServer(t, "srv-a", 20*gib), newFakeServer(t, "srv-b", 30*gib), newFakeServer(t, "srv-c", 10*gib)
	rc := newReplCluster(a, b, c3)
	src := &listed{}
	src.set(a.discovery(), b.discovery(), c3.discovery())
	store := placements.NewMemory()
	c := rc.controllerFrom(t, ControllerOptions{}, src, time.Nanosecond, store)
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, createReq("pvc-gone", gib, map[string]string{api.ParamServer: "srv-a", api.ParamReplicas: "2"})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVolume(ctx, createReq("pvc-never", gib, map[string]string{api.ParamServer: "srv-c", api.ParamReplicas: "2"})); err != nil {
		t.Fatal(err)
	}
	rc.stop("srv-a")
	c.servers.Refresh(ctx)
	m, _ := c.servers.Get("srv-a")
	since := m.Status().DownSince
	src.set(b.discovery(), c3.discovery())
	c.servers.Refresh(ctx) // missing from now
	c.servers.Refresh(ctx) // forgotten: ForgetAfter is a nanosecond
	if _, known := c.servers.Get("srv-a"); known || c.servers.Gone()["srv-a"] != since {
		t.Fatalf("setup: srv-a known %v, gone %v (down since %v)", known, c.servers.Gone(), since)
	}
	state := &autoState{unknown: map[string]time.Time{}}
	c.autoPromoteOnce(ctx, time.Minute, since.Add(59*time.Second), state)
	if rec := record(t, c, "pvc-gone"); rec.Server != "srv-a" {
		t.Fatalf("promoted before --promote-after: %+v", rec)
	}
	c.autoPromoteOnce(ctx, time.Minute, since.Add(time.Minute), state)
	rec := record(t, c, "pvc-gone")
	if rec.Server == "srv-a" || rec.Gen() != 2 || slices.Contains(rec.Replicas, "srv-a") {
		t.Fatalf("not promoted off the forgotten server: %+v", rec)
	}
	if p := rc.copyOf(rec.Server, "pvc-gone"); p == nil || p.role != api.RolePrimary || p.gen != 2 {
		t.Fatalf("the new primary's copy: %+v", p)
	}

	// A controller that never knew srv-c: its volume moves after it has
	// been unknown to this loop for --promote-after, not before.
	rec = record(t, c, "pvc-never")
	rc.stop("srv-c")
	src.set(b.discovery())
	c.servers.Refresh(ctx)
	c.servers.Refresh(ctx)
	fresh := rc.controllerFrom(t, ControllerOptions{}, src, time.Nanosecond, store)
	if _, known := fresh.servers.Get("srv-c"); known || len(fresh.servers.Gone()) != 0 {
		t.Fatalf("setup: the fresh controller knows srv-c (%v) or a gone server (%v)", known, fresh.servers.Gone())
	}
	state, t0 := &autoState{unknown: map[string]time.Time{}}, time.Now()
	fresh.autoPromoteOnce(ctx, time.Minute, t0, state)
	fresh.autoPromoteOnce(ctx, time.Minute, t0.Add(59*time.Second), state)
	if got := record(t, fresh, "pvc-never"); got.Server != "srv-c" {
		t.Fatalf("promoted before --promote-after: %+v", got)
	}
	fresh.autoPromoteOnce(ctx, time.Minute, t0.Add(time.Minute), state)
	if got := record(t, fresh, "pvc-never"); got.Server != "srv-b" || got.Gen() != rec.Gen()+1 {
		t.Fatalf("not promoted off a server unknown since start: %+v (was %+v)", got, rec)
	}
	fresh.autoPromoteOnce(ctx, time.Minute, t0.Add(2*time.Minute), state)
	if len(state.unknown) != 0 {
		t.Errorf("unknown servers kept after their volumes moved: %v", state.unknown)
	}
}
