package driver

import (
	"context"
	"slices"
	"testing"

	"github.com/dots-csi/dots/pkg/api"
)

// zoned is a fake server in a zone.
func zoned(t *testing.T, name, zone string, free int64) *fakeServer {
	f := newFakeServer(t, name, free)
	f.zone = zone
	return f
}

// TestReplicasGoToOtherZones: each replica goes to the server with the
// most free space in a zone no copy of the volume is in; when no other
// zone has room, to the most free server all the same.
func TestReplicasGoToOtherZones(t *testing.T) {
	rc := newReplCluster(
		zoned(t, "srv-a", "zone-a", 10*gib),
		zoned(t, "srv-b", "zone-a", 50*gib), // the most free, but in the primary's zone
		zoned(t, "srv-c", "zone-b", 20*gib),
		zoned(t, "srv-d", "zone-b", 30*gib),
		zoned(t, "srv-e", "zone-c", 5*gib),
	)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		size     int64
		replicas string
		want     []string
	}{
		{"pvc-two", gib, "2", []string{"srv-d"}},                    // zone-b's most free
		{"pvc-three", gib, "3", []string{"srv-d", "srv-e"}},         // then zone-c, though srv-b and srv-c have more room
		{"pvc-four", gib, "4", []string{"srv-d", "srv-e", "srv-b"}}, // three zones, four copies: the most free left
		{"pvc-big", 8 * gib, "3", []string{"srv-d", "srv-b"}},       // zone-c has no room for 8 GiB: zone-a's srv-b
	} {
		p := map[string]string{api.ParamServer: "srv-a", api.ParamReplicas: tc.replicas}
		if _, err := c.CreateVolume(ctx, createReq(tc.name, tc.size, p)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if rec := record(t, c, tc.name); !slices.Equal(rec.Replicas, tc.want) {
			t.Errorf("%s: replicas %v, want %v", tc.name, rec.Replicas, tc.want)
		}
	}
}

// TestReplicasWithoutZones: servers without zones place as before, the
// most free first.
func TestReplicasWithoutZones(t *testing.T) {
	rc := newReplCluster(newFakeServer(t, "srv-a", 10*gib), newFakeServer(t, "srv-b", 50*gib), newFakeServer(t, "srv-c", 20*gib))
	c := rc.controller(t, ControllerOptions{})
	p := map[string]string{api.ParamServer: "srv-a", api.ParamReplicas: "3"}
	if _, err := c.CreateVolume(context.Background(), createReq("pvc", gib, p)); err != nil {
		t.Fatal(err)
	}
	if rec := record(t, c, "pvc"); !slices.Equal(rec.Replicas, []string{"srv-b", "srv-c"}) {
		t.Errorf("replicas %v", rec.Replicas)
	}
}

// TestReplaceReplicaKeepsZones: a drained replica is replaced in a zone
// away from the copies that stay (its own zone is free again), not next to
// the primary.
func TestReplaceReplicaKeepsZones(t *testing.T) {
	rc := newReplCluster(
		zoned(t, "srv-a", "zone-a", 10*gib),
		zoned(t, "srv-b", "zone-a", 50*gib),
		zoned(t, "srv-c", "zone-b", 40*gib),
		zoned(t, "srv-d", "zone-b", 20*gib),
	)
	c := rc.controller(t, ControllerOptions{})
	ctx := context.Background()
	p := map[string]string{api.ParamServer: "srv-a", api.ParamReplicas: "2"}
	if _, err := c.CreateVolume(ctx, createReq("pvc", gib, p)); err != nil {
		t.Fatal(err)
	}
	if rec := record(t, c, "pvc"); !slices.Equal(rec.Replicas, []string{"srv-c"}) {
		t.Fatalf("setup: replicas %v", rec.Replicas)
	}
	var events []api.MoveEvent
	if err := c.Drain(ctx, "srv-c", func(ev api.MoveEvent) { events = append(events, ev) }); err != nil {
		t.Fatal(err)
	}
	if rec := record(t, c, "pvc"); rec.Server != "srv-a" || !slices.Equal(rec.Replicas, []string{"srv-d"}) {
		t.Errorf("after the drain: %+v (events %+v)", rec, events)
	}
}
