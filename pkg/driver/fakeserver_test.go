package driver

import (
	"context"
	"net"
	"sort"
	"sync"
	"testing"

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
	creates int
	// failCreates, when set, is every create's answer.
	failCreates error
}

func newFakeServer(t *testing.T, name string, free int64, volumes ...string) *fakeServer {
	t.Helper()
	f := &fakeServer{name: name, free: free, volumes: map[string]int64{}}
	for _, v := range volumes {
		f.volumes[v] = 1 << 20
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	f.srv = csirpc.NewServer(csirpc.NewCodes(api.ErrorCodes), nil, grpc.Creds(testServerCreds(t)))
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

func (f *fakeServer) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

func (f *fakeServer) GetCapacity(context.Context, *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &csi.GetCapacityResponse{AvailableCapacity: f.free}, nil
}

func (f *fakeServer) volume(id string) *csi.Volume {
	return &csi.Volume{VolumeId: id, CapacityBytes: f.volumes[id], VolumeContext: map[string]string{
		api.ContextExport: "/dots/" + id, api.ContextLocalPath: "/mnt/" + id}}
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
	for _, id := range ids[first:end] {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: f.volume(id)})
	}
	return resp, nil
}

func (f *fakeServer) ListSnapshots(context.Context, *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	return &csi.ListSnapshotsResponse{}, nil
}

func mountCaps() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}
}
