package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/registry"
)

// fakeController answers the client's controller calls from memory on a
// unix socket, recording the sizes creates ask for.
type fakeController struct {
	csi.UnimplementedControllerServer
	mu      sync.Mutex
	created map[string]int64 // name → required bytes
}

func (f *fakeController) volume(id string, size int64) *csi.Volume {
	return &csi.Volume{VolumeId: id, CapacityBytes: size, VolumeContext: map[string]string{
		api.ContextServer: "s0", api.ContextNFSAddress: "127.0.0.1", api.ContextExport: "/dots/" + id, api.ContextUsedBytes: "4096"}}
}

func (f *fakeController) GetSnapshot(_ context.Context, r *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	if r.GetSnapshotId() != "s0/snap" {
		return nil, status.Error(codes.NotFound, "no such snapshot")
	}
	return &csi.GetSnapshotResponse{Snapshot: &csi.Snapshot{SnapshotId: "s0/snap", SourceVolumeId: "s0/big", SizeBytes: 300 << 20,
		CreationTime: timestamppb.New(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)), ReadyToUse: true}}, nil
}

func (f *fakeController) ControllerGetVolume(_ context.Context, r *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.GetVolumeId() == "s0/big" {
		return &csi.ControllerGetVolumeResponse{Volume: f.volume("s0/big", 5<<30)}, nil
	}
	for name, size := range f.created {
		if "s0/"+name == r.GetVolumeId() {
			return &csi.ControllerGetVolumeResponse{Volume: f.volume(r.GetVolumeId(), size)}, nil
		}
	}
	return nil, status.Error(codes.NotFound, "no such volume")
}

func (f *fakeController) CreateVolume(_ context.Context, r *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	size := r.GetCapacityRange().GetRequiredBytes()
	if size == 0 {
		size = 1 << 30 // the controller's default
	}
	f.created[r.GetName()] = size
	v := f.volume("s0/"+r.GetName(), size)
	delete(v.VolumeContext, api.ContextUsedBytes) // as servers answer creates
	return &csi.CreateVolumeResponse{Volume: v}, nil
}

func (f *fakeController) ControllerGetVolumeHealth(_ context.Context, r *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: &csi.VolumeHealth{VolumeId: r.GetVolumeId(),
		HealthStatuses: []*csi.VolumeHealth_VolumeHealthEntry{{Status: csi.VolumeHealthErrorType_DEGRADED, Reason: "PoolDegraded", Message: "pool tank is DEGRADED"}}}}, nil
}

func startFakeController(t *testing.T) (*Client, *fakeController) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeController{created: map[string]int64{}}
	g := grpc.NewServer()
	csi.RegisterControllerServer(g, f)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	c, err := Dial("unix://"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, f
}

// TestDefaultSizes: a restore without a size is as large as its snapshot,
// a clone as its source volume, a new volume the controller's default; an
// explicit size wins.
func TestDefaultSizes(t *testing.T) {
	c, f := startFakeController(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    CreateOptions
		want int64
	}{
		{"restored", CreateOptions{Snapshot: "s0/snap"}, 300 << 20},
		{"cloned", CreateOptions{Volume: "s0/big"}, 5 << 30},
		{"new", CreateOptions{}, 0},
		{"restored-sized", CreateOptions{Snapshot: "s0/snap", Size: 2 << 30}, 2 << 30},
	} {
		v, err := c.CreateVolume(ctx, tc.name, tc.o)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		f.mu.Lock()
		got := f.created[tc.name]
		f.mu.Unlock()
		if want := tc.want; (want == 0 && got != 1<<30) || (want != 0 && got != want) {
			t.Errorf("%s: asked for %d bytes, want %d", tc.name, got, want)
		}
		// Read back after the create: what it holds, and its health.
		if v.Used != 4096 || !v.HealthKnown || len(v.Health) != 1 || v.Health[0].Reason != "PoolDegraded" {
			t.Errorf("%s: created volume %+v", tc.name, v)
		}
	}
	if _, err := c.CreateVolume(ctx, "x", CreateOptions{Snapshot: "s0/missing"}); status.Code(err) != codes.NotFound {
		t.Errorf("restore of a missing snapshot: %v", err)
	}
}

var lowerCamel = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// keysOf checks every key of a JSON document is lowerCamel, and returns
// the top level's kind: object or array.
func keysOf(t *testing.T, what string, data []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, data)
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if !lowerCamel.MatchString(k) {
					t.Errorf("%s: key %q is not lowerCamel", what, k)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return "other"
}

// TestJSONShapes: every answer of one thing is an object, every listing
// an array (empty, not null), keys lowerCamel, times RFC 3339 with a zone.
func TestJSONShapes(t *testing.T) {
	var buf bytes.Buffer
	p := Printer{W: &buf, Format: JSON}
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	snap := Snapshot{ID: "s0/snap", SourceVolume: "s0/v", Size: 1, Created: created, Ready: true}
	vol := Volume{ID: "s0/v", Health: []HealthEntry{{Status: "DEGRADED", Reason: "PoolDegraded", Message: "m"}}}
	for _, tc := range []struct {
		what  string
		print func() error
		shape string
	}{
		{"volume", func() error { return p.Volume(vol) }, "object"},
		{"snapshot", func() error { return p.Snapshot(snap) }, "object"},
		{"stats", func() error { return p.Stats(Stats{TotalBytes: 5, Health: []HealthEntry{}}) }, "object"},
		{"action", func() error { return p.Done(Action{ID: "s0/v", Action: "deleted", Text: "deleted"}) }, "object"},
		{"volumes", func() error { return p.Volumes([]Volume{vol}) }, "array"},
		{"no volumes", func() error { return p.Volumes(nil) }, "array"},
		{"snapshots", func() error { return p.Snapshots([]Snapshot{snap}) }, "array"},
		{"servers", func() error {
			return p.Servers(WithOrphans([]registry.ServerView{{Server: discovery.Server{Name: "s0"}, Status: registry.Status{Checked: created}}},
				[]api.OrphanedPool{{Server: "s3", Namespace: "dots", Claim: "pool-s-3", StatefulSet: "s", Ordinal: 3, Replicas: 2, Volumes: -1}}))
		}, "array"},
		{"replicated volume", func() error {
			return p.Volume(Volume{ID: "s0/v", Health: []HealthEntry{}, Generation: 2,
				Replicas: []api.ReplicaStatus{{Peer: api.Peer{Server: "s1", Address: "s1:7070"}, LastSync: created, LagSeconds: 1}}})
		}, "object"},
		{"promoted", func() error { return p.Promoted(api.PromoteVolumeResult{Volume: "s0/v", From: "s0", To: "s1"}) }, "object"},
		{"progress line", func() error { return p.Progress(api.MoveEvent{Time: created, Kind: api.MovePrimary, Volume: "s0/v"}) }, "object"},
	} {
		buf.Reset()
		if err := tc.print(); err != nil {
			t.Fatal(err)
		}
		if got := keysOf(t, tc.what, buf.Bytes()); got != tc.shape {
			t.Errorf("%s: %s, want %s:\n%s", tc.what, got, tc.shape, buf.String())
		}
		if tc.what == "no volumes" && bytes.TrimSpace(buf.Bytes())[0] != '[' {
			t.Errorf("an empty listing is %s", buf.String())
		}
	}
	buf.Reset()
	_ = p.Snapshot(snap)
	var s struct{ Created string }
	_ = json.Unmarshal(buf.Bytes(), &s)
	if got, err := time.Parse(time.RFC3339, s.Created); err != nil || !got.Equal(created) || s.Created != "2026-12-01T10:00:00+01:00" {
		t.Errorf("created %q: %v", s.Created, err)
	}
	buf.Reset()
	_ = p.Volume(Volume{ID: "x", Health: []HealthEntry{}})
	if !bytes.Contains(buf.Bytes(), []byte(`"health": []`)) {
		t.Errorf("a healthy volume's health is not an empty list:\n%s", buf.String())
	}
}
