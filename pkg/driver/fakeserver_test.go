package driver

import (
	"context"
	"net"
	"path"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/discovery"
)

// fakeServer is an in-memory storage server speaking real gRPC on loopback,
// for the controller's routing logic. The real server is tested with real
// ZFS in TestServerDown, csi-sanity and pkg/server.
type fakeServer struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	name string
	addr string
	srv  *grpc.Server

	mu      sync.Mutex
	free    int64
	volumes map[string]int64 // id → capacity
	// more is volumes it reports in its manifest's counts beyond those
	// in volumes: a server that holds many without the test keeping them.
	more    int
	creates int
	// failCreates, when set, is every create's answer.
	failCreates error
	// calls counts the calls answered, by method ("CreateVolume", ...);
	// listed counts the entries its listings returned.
	calls  map[string]int
	listed int
	// modified holds the mutable parameters of the last modify, by volume.
	modified map[string]map[string]string
	// used is what volumes report as their used bytes (none: 0).
	used map[string]int64
	// usedBytes is the pool's used bytes in the manifest (0: 1 GiB).
	usedBytes int64
	// zone is the manifest's api.ManifestZone (empty: none).
	zone string
	// snaps holds the snapshots taken and not deleted: ID → source.
	snaps map[string]string
}

func newFakeServer(t testing.TB, name string, free int64, volumes ...string) *fakeServer {
	t.Helper()
	f := &fakeServer{name: name, free: free, volumes: map[string]int64{}, calls: map[string]int{}}
	for _, v := range volumes {
		f.volumes[v] = 1 << 20
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	f.srv = csirpc.NewServer(csirpc.NewCodes(api.ErrorCodes), nil, grpc.Creds(testServerCreds(t)), grpc.ChainUnaryInterceptor(f.count))
	csi.RegisterIdentityServer(f.srv, f)
	csi.RegisterControllerServer(f.srv, f)
	go f.srv.Serve(lis)
	t.Cleanup(f.srv.Stop)
	return f
}

func (f *fakeServer) discovery() discovery.Server {
	return discovery.Server{Name: f.name, APIAddress: f.addr, NFSAddress: "10.0.0." + f.name[len(f.name)-1:], NFSPort: 2049}
}

func (f *fakeServer) setFree(b int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.free = b
}

func (f *fakeServer) count(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	f.mu.Lock()
	f.calls[path.Base(info.FullMethod)]++
	f.mu.Unlock()
	return h(ctx, req)
}

// takeCalls returns the calls answered since the last takeCalls.
func (f *fakeServer) takeCalls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = map[string]int{}
	return c
}

// GetPluginInfo carries the summary a server keeps: its pool's space and
// the counts of what it holds.
func (f *fakeServer) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	used := f.usedBytes
	if used == 0 {
		used = gib
	}
	info := api.PoolInfo{Pool: "tank-" + f.name, Health: "ONLINE", Size: f.free + used, Used: used, Available: f.free, ReadAt: time.Now(),
		HasCounts: true, Volumes: len(f.volumes) + f.more}
	for _, c := range f.volumes {
		info.Provisioned += c
	}
	m := map[string]string{api.ManifestRole: "storage-server", api.ManifestServer: f.name}
	if f.zone != "" {
		m[api.ManifestZone] = f.zone
	}
	info.Manifest(m)
	return &csi.GetPluginInfoResponse{Name: "dots.csi.dev", Manifest: m}, nil
}

func (f *fakeServer) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

func (f *fakeServer) GetCapacity(context.Context, *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &csi.GetCapacityResponse{AvailableCapacity: f.free}, nil
}

func (f *fakeServer) volume(id string) *csi.Volume {
	v := &csi.Volume{VolumeId: id, CapacityBytes: f.volumes[id], VolumeContext: map[string]string{
		api.ContextExport: "/dots/" + id, api.ContextLocalPath: "/mnt/" + id}}
	if u, ok := f.used[id]; ok {
		v.VolumeContext[api.ContextUsedBytes] = strconv.FormatInt(u, 10)
	}
	for k, val := range f.modified[id] {
		v.VolumeContext[api.ContextParamPrefix+k] = val
	}
	return v
}

func (f *fakeServer) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	if f.failCreates != nil {
		return nil, f.failCreates
	}
	if _, ok := f.volumes[req.GetName()]; !ok {
		f.volumes[req.GetName()] = req.GetCapacityRange().GetRequiredBytes()
		f.free -= req.GetCapacityRange().GetRequiredBytes()
	}
	return &csi.CreateVolumeResponse{Volume: f.volume(req.GetName())}, nil
}

func (f *fakeServer) ControllerGetVolume(_ context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.volumes[req.GetVolumeId()]; !ok {
		return nil, status.Error(codes.NotFound, "no such volume")
	}
	return &csi.ControllerGetVolumeResponse{Volume: f.volume(req.GetVolumeId())}, nil
}

// ControllerModifyVolume records the parameters it was given, reported by
// ControllerGetVolume as a real server reports them.
func (f *fakeServer) ControllerModifyVolume(_ context.Context, req *csi.ControllerModifyVolumeRequest) (*csi.ControllerModifyVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.volumes[req.GetVolumeId()]; !ok {
		return nil, status.Error(codes.NotFound, "no such volume")
	}
	if f.modified == nil {
		f.modified = map[string]map[string]string{}
	}
	f.modified[req.GetVolumeId()] = req.GetMutableParameters()
	return &csi.ControllerModifyVolumeResponse{}, nil
}

func (f *fakeServer) ListVolumes(_ context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.volumes))
	for id := range f.volumes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	first, end, next, err := csirpc.Page(ids, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	f.listed += end - first
	for _, id := range ids[first:end] {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: f.volume(id)})
	}
	return resp, nil
}

func (f *fakeServer) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.volumes, req.GetVolumeId())
	return &csi.DeleteVolumeResponse{}, nil
}

func (f *fakeServer) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	f.mu.Lock()
	if f.snaps == nil {
		f.snaps = map[string]string{}
	}
	f.snaps[req.GetName()] = req.GetSourceVolumeId()
	f.mu.Unlock()
	return &csi.CreateSnapshotResponse{Snapshot: &csi.Snapshot{SnapshotId: req.GetName(), SourceVolumeId: req.GetSourceVolumeId(), ReadyToUse: true}}, nil
}

func (f *fakeServer) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.snaps, req.GetSnapshotId())
	return &csi.DeleteSnapshotResponse{}, nil
}

func (f *fakeServer) ListSnapshots(context.Context, *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	return &csi.ListSnapshotsResponse{}, nil
}

func mountCaps() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}
}
