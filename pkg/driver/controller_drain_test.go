package driver

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
)

// TestDrain: every primary on the drained server moves off with its data
// (handed over: the last write too), every replica it holds is replaced
// elsewhere, each volume keeps its number of copies, and the server holds
// nothing after.
func TestDrain(t *testing.T) {
	a, b, c3 := newFakeServer(t, "srv-a", 30*gib), newFakeServer(t, "srv-b", 20*gib), newFakeServer(t, "srv-c", 20*gib)
	rc := newReplCluster(a, b, c3)
	hook := &movedHook{}
	c := rc.controller(t, ControllerOptions{VolumeMoved: hook})
	ctx := context.Background()
	pin := func(extra map[string]string) map[string]string {
		p := map[string]string{api.ParamServer: "srv-a"}
		for k, v := range extra {
			p[k] = v
		}
		return p
	}
	plain := []string{"pvc-0", "pvc-1", "pvc-2", "pvc-3"}
	for _, n := range plain {
		if _, err := c.CreateVolume(ctx, createReq(n, gib, pin(nil))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateVolume(ctx, createReq("pvc-r", gib, pin(replParams("2")))); err != nil {
		t.Fatal(err)
	}
	// A volume whose primary is elsewhere with a replica on srv-a.
	if _, err := c.CreateVolume(ctx, createReq("pvc-held", gib, map[string]string{api.ParamServer: "srv-b", api.ParamReplicas: "2"})); err != nil {
		t.Fatal(err)
	}
	if rec := record(t, c, "pvc-held"); !slices.Equal(rec.Replicas, []string{"srv-a"}) {
		t.Fatalf("setup: %+v", rec)
	}
	// Data written after replication last ran (the unreplicated ones
	// never did): the handover carries it.
	rc.mu.Lock()
	for _, n := range plain {
		rc.copies["srv-a"][n] = &fakeCopy{role: api.RolePrimary, gen: 1}
	}
	rc.mu.Unlock()
	for _, n := range append(plain, "pvc-r") {
		rc.write("srv-a", n, "data of "+n)
	}
	var events []api.MoveEvent
	if err := c.Drain(ctx, "srv-a", func(ev api.MoveEvent) { events = append(events, ev) }); err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	if events[0].Kind != api.MovePlan || events[0].Total != 6 || last.Kind != api.MoveDone || last.Done != 6 || last.Failed != 0 {
		t.Fatalf("events %+v", events)
	}
	recs, _ := c.placements.List(ctx)
	for _, r := range recs {
		if r.Kind != placements.Volume {
			continue
		}
		if slices.Contains(r.Servers(), "srv-a") {
			t.Errorf("%s still on srv-a: %+v", r.ID, r)
		}
		want := 0
		if r.ID == "pvc-r" || r.ID == "pvc-held" {
			want = 1
		}
		if len(r.Replicas) != want {
			t.Errorf("%s: replicas %v, want %d", r.ID, r.Replicas, want)
		}
		if r.ID != "pvc-held" {
			if p := rc.copyOf(r.Server, r.ID); p == nil || p.role != api.RolePrimary || p.data != "data of "+r.ID {
				t.Errorf("%s on %s: %+v", r.ID, r.Server, p)
			}
			if r.ClusterID() != "srv-a/"+r.ID {
				t.Errorf("%s: cluster ID %q", r.ID, r.ClusterID())
			}
		}
	}
	a.mu.Lock()
	left := len(a.volumes)
	a.mu.Unlock()
	rc.mu.Lock()
	copies := len(rc.copies["srv-a"])
	rc.mu.Unlock()
	if left != 0 || copies != 0 {
		t.Errorf("srv-a holds %d volumes and %d copies after its drain", left, copies)
	}
	if n := len(hook.took()); n != 5 {
		t.Errorf("hook told of %d moves, want 5 primaries", n)
	}
}

// TestRebalance: volumes move from the fullest server to the emptiest
// until they are within the tolerance, each move closing the gap without
// overshooting it.
func TestRebalance(t *testing.T) {
	a, b := newFakeServer(t, "srv-a", 2*gib), newFakeServer(t, "srv-b", 8*gib)
	a.usedBytes, b.usedBytes = 8*gib, 2*gib // 80 % and 20 % used
	rc := newReplCluster(a, b)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	a.used = map[string]int64{}
	for i, size := range []int64{gib, 2 * gib, 4 * gib} {
		n := "pvc-" + string(rune('a'+i))
		if _, err := c.CreateVolume(ctx, createReq(n, gib, map[string]string{api.ParamServer: "srv-a"})); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		a.used[n] = size
		a.mu.Unlock()
	}
	var events []api.MoveEvent
	if err := c.Rebalance(ctx, func(ev api.MoveEvent) { events = append(events, ev) }); err != nil {
		t.Fatal(err)
	}
	// 8 vs 2 GiB used of 10: half the gap is 3 GiB, so the 2 GiB volume
	// moves (4 GiB would overshoot); 6 vs 4 is still 20 % apart, half the
	// gap 1 GiB: the 1 GiB one moves; 5 vs 5 is balanced.
	var moved []string
	for _, ev := range events {
		if ev.Kind == api.MovePrimary {
			moved = append(moved, ev.Volume)
		}
	}
	if !slices.Equal(moved, []string{"srv-a/pvc-b", "srv-a/pvc-a"}) || events[len(events)-1].Kind != api.MoveDone {
		t.Fatalf("moved %v; events %+v", moved, events)
	}
	if rec := record(t, c, "pvc-b"); rec.Server != "srv-b" || rec.Replicated() {
		t.Errorf("record %+v", rec)
	}
}

// TestAdminEndpoints: the JSON shapes of pkg/api admin.go over HTTP.
func TestAdminEndpoints(t *testing.T) {
	a, b := newFakeServer(t, "srv-a", 20*gib), newFakeServer(t, "srv-b", 10*gib)
	rc := newReplCluster(a, b)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, createReq("pvc-h", gib, replParams("2"))); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for p, h := range c.AdminHandlers() {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	post := func(path, body string) *http.Response {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := post(api.AdminPathPromote, `{"volume":"srv-a/pvc-h","to":"srv-b"}`)
	var res api.PromoteVolumeResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != 200 || res.To != "srv-b" || res.Generation != 2 {
		t.Fatalf("promote: %d %+v %v", resp.StatusCode, res, err)
	}
	resp = post(api.AdminPathPromote, `{"volume":"srv-a/nothing"}`)
	var e api.AdminError
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusNotFound || e.Error == "" {
		t.Errorf("promote of no volume: %d %+v %v", resp.StatusCode, e, err)
	}
	if resp := post(api.AdminPathDrain, `{"server":"srv-x"}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("drain of an unknown server: %d", resp.StatusCode)
	}
	get, err := http.Get(srv.URL + api.AdminPathRebalance)
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	if get.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", get.StatusCode)
	}
	resp = post(api.AdminPathDrain, `{"server":"srv-b"}`)
	var kinds []api.MoveKind
	var lines []api.MoveEvent
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev api.MoveEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		kinds = append(kinds, ev.Kind)
		lines = append(lines, ev)
	}
	// srv-b is pvc-h's primary now: it moves to its replica on srv-a;
	// with two servers there is nowhere else for the copy srv-b keeps,
	// and the line says so.
	if !slices.Equal(kinds, []api.MoveKind{api.MovePlan, api.MovePrimary, api.MoveDone}) || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("drain lines %v (%s)", kinds, resp.Header.Get("Content-Type"))
	}
	if l := lines[1]; l.To != "srv-a" || l.Generation != 3 || !strings.Contains(l.Error, "not replaced") {
		t.Errorf("the move's line %+v", l)
	}
}

// TestMoveRefusedAfterHandover: when the target refuses to take over after
// the source handed over, the source serves the volume again (a new
// generation, its data intact) instead of leaving it unserved, and the
// target's copy is dropped.
func TestMoveRefusedAfterHandover(t *testing.T) {
	a, b := newFakeServer(t, "srv-a", 20*gib), newFakeServer(t, "srv-b", 10*gib)
	rc := newReplCluster(a, b)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, createReq("pvc-m", gib, map[string]string{api.ParamServer: "srv-a"})); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	rc.copies["srv-a"]["pvc-m"] = &fakeCopy{role: api.RolePrimary, gen: 1, data: "kept"}
	rc.refusePromote = map[string]bool{"srv-b": true}
	rc.mu.Unlock()
	var events []api.MoveEvent
	if err := c.Drain(ctx, "srv-a", func(ev api.MoveEvent) { events = append(events, ev) }); err != nil {
		t.Fatal(err)
	}
	if ev := events[1]; ev.Kind != api.MoveFailed || !strings.Contains(ev.Error, "srv-a serves it again") {
		t.Fatalf("the move's line %+v", ev)
	}
	if rec := record(t, c, "pvc-m"); rec.Server != "srv-a" || rec.Replicated() || rec.Gen() != 2 {
		t.Errorf("record %+v", rec)
	}
	if p := rc.copyOf("srv-a", "pvc-m"); p == nil || p.role != api.RolePrimary || p.data != "kept" || p.gen != 2 {
		t.Errorf("source %+v", p)
	}
	if rc.copyOf("srv-b", "pvc-m") != nil {
		t.Error("the target's copy was not dropped")
	}
	a.mu.Lock()
	_, served := a.volumes["pvc-m"]
	a.mu.Unlock()
	if !served {
		t.Error("the source does not serve the volume again")
	}
}

// TestDrainFailedLineHasNoBytes: a volume that cannot move (no server has
// room) is reported without bytes, after one that moved with its own.
func TestDrainFailedLineHasNoBytes(t *testing.T) {
	a, b := newFakeServer(t, "srv-a", 20*gib), newFakeServer(t, "srv-b", 3*gib)
	rc := newReplCluster(a, b)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	a.used = map[string]int64{}
	for n, size := range map[string]int64{"pvc-a": gib, "pvc-b": 5 * gib} {
		if _, err := c.CreateVolume(ctx, createReq(n, size, map[string]string{api.ParamServer: "srv-a"})); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		a.used[n] = 114688
		a.mu.Unlock()
	}
	var events []api.MoveEvent
	if err := c.Drain(ctx, "srv-a", func(ev api.MoveEvent) { events = append(events, ev) }); err != nil {
		t.Fatal(err)
	}
	if len(events) != 4 || events[1].Kind != api.MovePrimary || events[1].Volume != "srv-a/pvc-a" || events[1].Bytes != 114688 ||
		events[2].Kind != api.MoveFailed || events[2].Volume != "srv-a/pvc-b" || events[2].Error == "" {
		t.Fatalf("events %+v", events)
	}
	if events[2].Bytes != 0 {
		t.Errorf("the failed line reports %d bytes", events[2].Bytes)
	}
	if b, _ := json.Marshal(events[2]); strings.Contains(string(b), `"bytes"`) {
		t.Errorf("the failed line's JSON carries bytes: %s", b)
	}
}
