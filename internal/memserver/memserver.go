// Package memserver is a storage server held in memory: the CSI Identity
// and Controller calls the cluster controller makes of a real server
// (manifest with pool figures and counts, Probe, GetCapacity, create,
// delete, get and last-key paged listings), answered from a sorted index
// instead of a pool. It lets a benchmark run the real controller over
// hundreds of servers holding millions of volumes, which no test machine
// can hold on ZFS. It is test machinery: nothing in production imports it.
package memserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/version"
)

// Errors of the fake pool, mapped as a real server maps its own.
var (
	ErrExists   = errors.New("already exists")
	ErrNotFound = errors.New("not found")
	ErrNoSpace  = errors.New("no space")
)

// Codes is the memserver's error table: the contract's rows and its own.
var Codes = csirpc.NewCodes(api.ErrorCodes, []api.ErrorCode{
	{Err: ErrExists, Code: codes.AlreadyExists},
	{Err: ErrNotFound, Code: codes.NotFound},
	{Err: ErrNoSpace, Code: codes.ResourceExhausted},
	{Err: csirpc.ErrBadToken, Code: codes.Aborted},
	{Err: csirpc.ErrBadMaxEntries, Code: codes.InvalidArgument},
})

// Stats count what the server was asked: what a controller's probes,
// listings and creates cost the servers.
type Stats struct {
	Probes, Infos, Capacities int64 // Probe, GetPluginInfo, GetCapacity calls
	Lists, Listed             int64 // ListVolumes calls, entries returned
	SnapshotLists             int64 // ListSnapshots calls (the controller's import ends with them)
	Creates, Deletes, Gets    int64
}

// Server is one in-memory storage server.
type Server struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	name string
	size int64 // the fake pool's size; free = size - provisioned

	mu          sync.RWMutex
	volumes     map[string]int64 // id → capacity
	keys        []string         // the ids, sorted: last-key paging
	provisioned int64

	probes, infos, capacities, lists, listed, snapshotLists, creates, deletes, gets atomic.Int64
}

// New returns an empty server named name over a fake pool of size bytes.
func New(name string, size int64) *Server {
	return &Server{name: name, size: size, volumes: map[string]int64{}}
}

// Name is the server's name.
func (s *Server) Name() string { return s.name }

// Fill adds n volumes of capacity bytes each, named PREFIX-NNNNNNN (faster
// than n creates: one sort).
func (s *Server) Fill(prefix string, n int, capacity int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		id := api.IDFor(fmt.Sprintf("%s-%07d", prefix, i))
		if _, ok := s.volumes[id]; ok {
			continue
		}
		s.volumes[id] = capacity
		s.keys = append(s.keys, id)
		s.provisioned += capacity
	}
	slices.Sort(s.keys)
}

// Volumes is how many volumes the server holds.
func (s *Server) Volumes() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.keys)
}

// Stats returns the call counts so far.
func (s *Server) Stats() Stats {
	return Stats{Probes: s.probes.Load(), Infos: s.infos.Load(), Capacities: s.capacities.Load(),
		Lists: s.lists.Load(), Listed: s.listed.Load(), SnapshotLists: s.snapshotLists.Load(), Creates: s.creates.Load(), Deletes: s.deletes.Load(), Gets: s.gets.Load()}
}

// Serve serves the server's gRPC API on lis with creds (mutual TLS, as a
// real server's) through the dots interceptor; stop ends it.
func (s *Server) Serve(lis net.Listener, creds credentials.TransportCredentials) (stop func()) {
	g := csirpc.NewServer(Codes, nil, grpc.Creds(creds))
	csi.RegisterIdentityServer(g, s)
	csi.RegisterControllerServer(g, s)
	go func() { _ = g.Serve(lis) }()
	return g.Stop
}

// GetPluginInfo answers as a real server: its role, name, and pool figures
// with counts (api.PoolInfo).
func (s *Server) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	s.infos.Add(1)
	m := map[string]string{api.ManifestRole: "storage-server", api.ManifestServer: s.name}
	s.mu.RLock()
	p := api.PoolInfo{Pool: s.name, Health: "ONLINE", Size: s.size, Used: 0, Available: s.free(), ReadAt: time.Now(),
		HasCounts: true, Volumes: len(s.keys), Provisioned: s.provisioned}
	s.mu.RUnlock()
	p.Manifest(m)
	return &csi.GetPluginInfoResponse{Name: version.DriverName, VendorVersion: version.Version, Manifest: m}, nil
}

// GetPluginCapabilities advertises the controller service.
func (s *Server) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: api.PluginCapabilities()}, nil
}

// Probe always answers ready.
func (s *Server) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	s.probes.Add(1)
	return &csi.ProbeResponse{}, nil
}

// ControllerGetCapabilities is a real server's set.
func (s *Server) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: api.ControllerCapabilities(false)}, nil
}

// free is thin: the pool's size less what was promised. Caller holds mu.
func (s *Server) free() int64 { return max(0, s.size-s.provisioned) }

// GetCapacity reports the free bytes.
func (s *Server) GetCapacity(context.Context, *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	s.capacities.Add(1)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &csi.GetCapacityResponse{AvailableCapacity: s.free()}, nil
}

func (s *Server) volume(id string, capacity int64) *csi.Volume {
	return &csi.Volume{VolumeId: id, CapacityBytes: capacity,
		VolumeContext: map[string]string{api.ContextExport: "/dots/" + id}}
}

// CreateVolume checks the request as every server does (api.ParseCreateVolume)
// and records the volume; a repeat with the same size returns it again.
// Content sources are not simulated.
func (s *Server) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	s.creates.Add(1)
	cv, err := api.ParseCreateVolume(req, 1<<30)
	if err != nil {
		return nil, err
	}
	if cv.Source.Kind != api.SourceNone {
		return nil, fmt.Errorf("%w: memserver has no content sources", api.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.volumes[cv.ID]; ok {
		if c != cv.Capacity {
			return nil, fmt.Errorf("%w: volume %s with %d bytes", ErrExists, cv.Name, c)
		}
		return &csi.CreateVolumeResponse{Volume: s.volume(cv.ID, c)}, nil
	}
	if cv.Capacity > s.free() {
		return nil, fmt.Errorf("%w: %d bytes free", ErrNoSpace, s.free())
	}
	s.volumes[cv.ID] = cv.Capacity
	i, _ := slices.BinarySearch(s.keys, cv.ID)
	s.keys = slices.Insert(s.keys, i, cv.ID)
	s.provisioned += cv.Capacity
	return &csi.CreateVolumeResponse{Volume: s.volume(cv.ID, cv.Capacity)}, nil
}

// DeleteVolume forgets the volume; an unknown one is deleted already.
func (s *Server) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	s.deletes.Add(1)
	if err := api.Required("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.volumes[req.GetVolumeId()]
	if !ok {
		return &csi.DeleteVolumeResponse{}, nil
	}
	delete(s.volumes, req.GetVolumeId())
	if i, found := slices.BinarySearch(s.keys, req.GetVolumeId()); found {
		s.keys = slices.Delete(s.keys, i, i+1)
	}
	s.provisioned -= c
	return &csi.DeleteVolumeResponse{}, nil
}

// ControllerGetVolume returns one volume.
func (s *Server) ControllerGetVolume(_ context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	s.gets.Add(1)
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.volumes[req.GetVolumeId()]
	if !ok {
		return nil, fmt.Errorf("%w: volume %s", ErrNotFound, req.GetVolumeId())
	}
	return &csi.ControllerGetVolumeResponse{Volume: s.volume(req.GetVolumeId(), c)}, nil
}

// ListVolumes returns one page after the token's last key: O(page), so a
// full pass is linear.
func (s *Server) ListVolumes(_ context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	s.lists.Add(1)
	s.mu.RLock()
	defer s.mu.RUnlock()
	first, end, next, err := csirpc.Page(s.keys, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next, Entries: make([]*csi.ListVolumesResponse_Entry, 0, end-first)}
	for _, id := range s.keys[first:end] {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: s.volume(id, s.volumes[id])})
	}
	s.listed.Add(int64(end - first))
	return resp, nil
}

// ListSnapshots: the simulated servers hold no snapshots; the token is
// checked all the same.
func (s *Server) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	s.snapshotLists.Add(1)
	if _, _, _, err := csirpc.Page(nil, req.GetStartingToken(), req.GetMaxEntries()); err != nil {
		return nil, err
	}
	return &csi.ListSnapshotsResponse{}, nil
}
