package driver

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// replCluster is the replication service of fake servers, held in memory:
// each server's copies of each volume, with the rules the real servers
// keep (a primary exports, a replica does not; generations only rise; a
// promotion at an expected snapshot the copy must hold). The real service
// is tested with real pools in test/replicas.
type replCluster struct {
	mu      sync.Mutex
	servers map[string]*fakeServer
	copies  map[string]map[string]*fakeCopy // server → volume → copy
	down    map[string]bool
	snaps   int
	now     time.Time
	// refusePromote makes a server refuse every promotion.
	refusePromote map[string]bool
	calls         []string // "SERVER Method VOLUME", in order
	// copied lists each Copy's snapshot and whether its server held it
	// then ("SNAPSHOT held"); failCopies fails that many Copies first.
	copied     []string
	failCopies int
}

// fakeCopy is one server's copy of a volume; data stands for its bytes.
type fakeCopy struct {
	role       api.Role
	gen        uint64
	latest     string
	latestTime time.Time
	interval   time.Duration
	replicas   []api.Peer
	data       string
}

func newReplCluster(servers ...*fakeServer) *replCluster {
	rc := &replCluster{servers: map[string]*fakeServer{}, copies: map[string]map[string]*fakeCopy{}, down: map[string]bool{},
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, s := range servers {
		rc.servers[s.name] = s
		rc.copies[s.name] = map[string]*fakeCopy{}
	}
	return rc
}

// controller returns a controller over the fake servers whose members'
// replication clients are this cluster's.
func (rc *replCluster) controller(t testing.TB, opts ControllerOptions) *ControllerServer {
	t.Helper()
	var list []discovery.Server
	for _, s := range rc.servers {
		list = append(list, s.discovery())
	}
	return rc.controllerFrom(t, opts, discovery.Static(list), 0, placements.NewMemory())
}

// controllerFrom is controller with the servers src lists, forgotten
// forgetAfter after src stops listing them (0: the registry's default),
// and the records in store.
func (rc *replCluster) controllerFrom(t testing.TB, opts ControllerOptions, src discovery.Source, forgetAfter time.Duration, store placements.Store) *ControllerServer {
	t.Helper()
	reg := registry.New(src, testClientCreds(t), registry.Options{ProbeTimeout: 300 * time.Millisecond, ForgetAfter: forgetAfter,
		Replication: func(s discovery.Server, _ grpc.ClientConnInterface) api.ReplicationServer {
			return &replClient{rc: rc, server: s.Name}
		}}, nil)
	reg.Refresh(context.Background())
	if opts.DefaultCapacity == 0 {
		opts.DefaultCapacity = gib
	}
	opts.ReadTimeout = time.Second
	c, err := NewControllerServer(reg, store, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stop takes a server down: its CSI endpoint and its replication.
func (rc *replCluster) stop(name string) {
	rc.mu.Lock()
	rc.down[name] = true
	rc.mu.Unlock()
	rc.servers[name].srv.Stop()
}

// write changes a primary's data (a client writing through NFS).
func (rc *replCluster) write(server, volume, data string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.copies[server][volume].data = data
}

// copyOf returns a copy of a server's copy (nil: none).
func (rc *replCluster) copyOf(server, volume string) *fakeCopy {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	c, ok := rc.copies[server][volume]
	if !ok {
		return nil
	}
	out := *c
	return &out
}

// snapshot takes a replication snapshot of a primary and sends it to its
// replicas that answer (under rc.mu).
func (rc *replCluster) snapshot(server, volume string) (string, []api.ReplicaStatus) {
	p := rc.copies[server][volume]
	rc.snaps++
	rc.now = rc.now.Add(time.Second)
	p.latest, p.latestTime = fmt.Sprintf("dots-repl-%d", rc.snaps), rc.now
	var sts []api.ReplicaStatus
	for _, peer := range p.replicas {
		st := api.ReplicaStatus{Peer: peer}
		if rc.down[peer.Server] {
			st.LastError = "unavailable"
		} else if r, ok := rc.copies[peer.Server][volume]; ok && r.gen > p.gen {
			st.LastError = api.ErrStaleGeneration.Error()
		} else {
			rc.copies[peer.Server][volume] = &fakeCopy{role: api.RoleReplica, gen: p.gen, latest: p.latest, latestTime: p.latestTime, data: p.data}
			st.LastSync = p.latestTime
		}
		sts = append(sts, st)
	}
	return p.latest, sts
}

// replClient is one server's replication service.
type replClient struct {
	rc     *replCluster
	server string
}

func (c *replClient) enter(method, volume string) error {
	c.rc.mu.Lock()
	c.rc.calls = append(c.rc.calls, c.server+" "+method+" "+volume)
	if c.rc.down[c.server] {
		c.rc.mu.Unlock()
		return status.Error(codes.Unavailable, "server down")
	}
	return nil
}

// primary is the server's primary copy; a CSI volume created there and not
// yet replicated is one of generation 1.
func (c *replClient) primary(volume string) (*fakeCopy, error) {
	p, ok := c.rc.copies[c.server][volume]
	if !ok {
		f := c.rc.servers[c.server]
		f.mu.Lock()
		_, exists := f.volumes[volume]
		f.mu.Unlock()
		if !exists {
			return nil, status.Error(codes.FailedPrecondition, api.ErrNotPrimary.Error())
		}
		p = &fakeCopy{role: api.RolePrimary, gen: 1}
		c.rc.copies[c.server][volume] = p
	}
	if p.role != api.RolePrimary {
		return nil, status.Error(codes.FailedPrecondition, api.ErrNotPrimary.Error())
	}
	return p, nil
}

func (c *replClient) state(volume string) api.VolumeState {
	p, ok := c.rc.copies[c.server][volume]
	if !ok {
		return api.VolumeState{Volume: volume}
	}
	return api.VolumeState{Volume: volume, Exists: true, Role: p.role, Generation: p.gen, Latest: p.latest, LatestTime: p.latestTime, Interval: p.interval}
}

func (c *replClient) State(_ context.Context, volume string) (api.VolumeState, error) {
	if err := c.enter("State", volume); err != nil {
		return api.VolumeState{}, err
	}
	defer c.rc.mu.Unlock()
	return c.state(volume), nil
}

func (c *replClient) SetReplicas(_ context.Context, req api.SetReplicasRequest) (api.VolumeState, error) {
	if err := c.enter("SetReplicas", req.Volume); err != nil {
		return api.VolumeState{}, err
	}
	defer c.rc.mu.Unlock()
	p, err := c.primary(req.Volume)
	if err != nil {
		return api.VolumeState{}, err
	}
	p.replicas, p.interval = req.Replicas, req.Interval
	// The first full send starts at once.
	c.rc.snapshot(c.server, req.Volume)
	return c.state(req.Volume), nil
}

func (c *replClient) Sync(_ context.Context, req api.SyncRequest) (api.VolumeState, error) {
	if err := c.enter("Sync", req.Volume); err != nil {
		return api.VolumeState{}, err
	}
	defer c.rc.mu.Unlock()
	if _, err := c.primary(req.Volume); err != nil {
		return api.VolumeState{}, err
	}
	_, sts := c.rc.snapshot(c.server, req.Volume)
	st := c.state(req.Volume)
	st.Replicas = sts
	return st, nil
}

func (c *replClient) Handover(_ context.Context, req api.HandoverRequest) (api.HandoverResult, error) {
	if err := c.enter("Handover", req.Volume); err != nil {
		return api.HandoverResult{}, err
	}
	defer c.rc.mu.Unlock()
	p, err := c.primary(req.Volume)
	if err != nil {
		return api.HandoverResult{}, err
	}
	final, _ := c.rc.snapshot(c.server, req.Volume)
	p.role, p.replicas = api.RoleReplica, nil
	f := c.rc.servers[c.server]
	f.mu.Lock()
	delete(f.volumes, req.Volume) // unexported
	f.mu.Unlock()
	return api.HandoverResult{Final: final}, nil
}

func (c *replClient) Promote(_ context.Context, req api.PromoteRequest) (api.VolumeState, error) {
	if err := c.enter("Promote", req.Volume); err != nil {
		return api.VolumeState{}, err
	}
	defer c.rc.mu.Unlock()
	r, ok := c.rc.copies[c.server][req.Volume]
	switch {
	case c.rc.refusePromote[c.server]:
		return api.VolumeState{}, status.Error(codes.NotFound, "no such replication snapshot")
	case !ok || r.role != api.RoleReplica:
		return api.VolumeState{}, status.Error(codes.FailedPrecondition, api.ErrNotReplica.Error())
	case req.Generation <= r.gen:
		return api.VolumeState{}, status.Error(codes.FailedPrecondition, api.ErrStaleGeneration.Error())
	case req.Expect != "" && req.Expect != r.latest:
		return api.VolumeState{}, status.Errorf(codes.FailedPrecondition, "holds %s, not the expected %s", r.latest, req.Expect)
	}
	r.role, r.gen, r.replicas, r.interval = api.RolePrimary, req.Generation, req.Replicas, req.Interval
	f := c.rc.servers[c.server]
	f.mu.Lock()
	f.volumes[req.Volume] = 1 << 20 // exported
	f.mu.Unlock()
	return c.state(req.Volume), nil
}

func (c *replClient) DropReplica(_ context.Context, req api.DropReplicaRequest) error {
	if err := c.enter("DropReplica", req.Volume); err != nil {
		return err
	}
	defer c.rc.mu.Unlock()
	r, ok := c.rc.copies[c.server][req.Volume]
	if ok && r.role != api.RoleReplica {
		return status.Error(codes.FailedPrecondition, api.ErrNotReplica.Error())
	}
	delete(c.rc.copies[c.server], req.Volume)
	return nil
}

func (c *replClient) Copy(_ context.Context, req api.CopyRequest) error {
	if err := c.enter("Copy", req.Name); err != nil {
		return err
	}
	defer c.rc.mu.Unlock()
	f, ok := c.rc.servers[req.To.Server]
	if !ok {
		return status.Error(codes.NotFound, "no such peer")
	}
	src := c.rc.servers[c.server]
	src.mu.Lock()
	_, held := src.snaps[req.Snapshot]
	src.mu.Unlock()
	c.rc.copied = append(c.rc.copied, fmt.Sprintf("%s held=%v", req.Snapshot, held))
	if c.rc.failCopies > 0 {
		c.rc.failCopies--
		return status.Error(codes.Unavailable, "the stream broke")
	}
	f.mu.Lock()
	f.volumes[req.Name] = req.Capacity
	f.mu.Unlock()
	return nil
}

func (c *ControllerServer) mustMember(t *testing.T, name string) *registry.Member {
	t.Helper()
	m, ok := c.servers.Get(name)
	if !ok {
		t.Fatalf("no member %s", name)
	}
	return m
}
