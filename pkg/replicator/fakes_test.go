package replicator

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/replication"
	"github.com/dots-csi/dots/pkg/zfs"
)

// fakeCopy is one copy of a volume in fakePool.
type fakeCopy struct {
	role  api.Role
	gen   uint64
	snaps []string
	reps  []api.Peer
}

// fakePool holds copies in memory and records the calls that change them.
type fakePool struct {
	mu       sync.Mutex
	copies   map[string]*fakeCopy
	demoted  []string // "volume gen common keep"
	received []string // "volume snapshot base"
	clock    int64
	// beforeDemote runs at the start of DemoteToReplica (unlocked).
	beforeDemote func()
	// divergedCopies answers DivergedCopies when set.
	divergedCopies func() []string
}

func newFakePool() *fakePool { return &fakePool{copies: map[string]*fakeCopy{}, clock: 1 << 20} }

func (f *fakePool) vol(name string, c *fakeCopy) *zfs.Volume {
	v := &zfs.Volume{Name: name, Generation: c.gen, Replicas: c.reps, ReplInterval: time.Second, Mounted: true}
	if n := len(c.snaps); n > 0 {
		v.ReplLatest = c.snaps[n-1]
		v.ReplLatestTime, _ = zfs.ReplSnapshotTime(v.ReplLatest)
	}
	return v
}

func (f *fakePool) GetVolume(_ context.Context, name string) (*zfs.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.copies[name]
	if !ok || c.role != api.RolePrimary {
		return nil, fmt.Errorf("%s: %w", name, zfs.ErrNotFound)
	}
	return f.vol(name, c), nil
}

func (f *fakePool) ListVolumes(context.Context) ([]*zfs.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*zfs.Volume
	for n, c := range f.copies {
		if c.role == api.RolePrimary {
			out = append(out, f.vol(n, c))
		}
	}
	return out, nil
}

func (f *fakePool) GetSnapshot(context.Context, string) (*zfs.Snapshot, error) {
	return nil, zfs.ErrNotFound
}

func (f *fakePool) ReplicaState(_ context.Context, volume string) (api.VolumeState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.copies[volume]
	if !ok {
		return api.VolumeState{Volume: volume}, nil
	}
	st := api.VolumeState{Volume: volume, Exists: true, Role: c.role, Generation: c.gen}
	if n := len(c.snaps); n > 0 {
		st.Latest = c.snaps[n-1]
		st.LatestTime, _ = zfs.ReplSnapshotTime(st.Latest)
	}
	return st, nil
}

func (f *fakePool) ReplicaNames(context.Context) ([]string, error) { return nil, nil }
func (f *fakePool) DivergedCopies(context.Context, string) ([]string, error) {
	if f.divergedCopies != nil {
		return f.divergedCopies(), nil
	}
	return nil, nil
}

func (f *fakePool) UserSnapshotsOf(context.Context, string) ([]zfs.UserSnapshot, error) {
	return []zfs.UserSnapshot{}, nil
}

func (f *fakePool) HasReplSnapshot(_ context.Context, volume, snap string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.copies[volume]
	if !ok {
		return false, nil
	}
	for _, s := range c.snaps {
		if s == snap {
			return true, nil
		}
	}
	return false, nil
}

func (f *fakePool) ReplSnapshot(_ context.Context, volume string) (string, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock++
	at := time.Unix(0, f.clock)
	snap := zfs.ReplSnapshotName(at)
	f.copies[volume].snaps = append(f.copies[volume].snaps, snap)
	return snap, at, nil
}

func (f *fakePool) Send(context.Context, string, string, string, io.Writer) error { return nil }
func (f *fakePool) SendSnapshot(context.Context, string, io.Writer) error         { return nil }

func (f *fakePool) Receive(_ context.Context, spec zfs.ReceiveSpec, r io.Reader) (api.VolumeState, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return api.VolumeState{}, err
	}
	f.mu.Lock()
	f.received = append(f.received, fmt.Sprintf("%s %s %s", spec.Volume, spec.Snapshot, spec.Base))
	c, ok := f.copies[spec.Volume]
	if !ok {
		c = &fakeCopy{role: api.RoleReplica}
		f.copies[spec.Volume] = c
	}
	c.gen, c.snaps = spec.Generation, append(c.snaps, spec.Snapshot)
	f.mu.Unlock()
	return f.ReplicaState(context.Background(), spec.Volume)
}

func (f *fakePool) ReplicationSent(context.Context, string, string, []string) error { return nil }

func (f *fakePool) ReceiveNewVolume(context.Context, zfs.VolumeSpec, io.Reader) (*zfs.Volume, error) {
	return nil, zfs.ErrInvalid
}

func (f *fakePool) PromoteReplica(_ context.Context, volume string, gen uint64, _ string, reps []api.Peer, _ time.Duration) (*zfs.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.copies[volume]
	c.role, c.gen, c.reps = api.RolePrimary, gen, reps
	return f.vol(volume, c), nil
}

func (f *fakePool) SetReplicas(_ context.Context, volume string, reps []api.Peer, _ time.Duration) (*zfs.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.copies[volume]
	c.reps = reps
	return f.vol(volume, c), nil
}

func (f *fakePool) DemoteToReplica(_ context.Context, volume, _ string, gen uint64, keep bool, common string) (string, error) {
	if f.beforeDemote != nil {
		f.beforeDemote()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.copies[volume]
	c.role, c.gen, c.reps = api.RoleReplica, gen, nil
	f.demoted = append(f.demoted, fmt.Sprintf("%s %d %s %t", volume, gen, common, keep))
	return "diverged/" + volume, nil
}

func (f *fakePool) DropReplica(_ context.Context, volume string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.copies, volume)
	return nil
}

// fakeHost records exports.
type fakeHost struct {
	mu       sync.Mutex
	exported map[string]bool
}

func (h *fakeHost) Export(_ context.Context, v *zfs.Volume) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.exported[v.Name] = true
	return nil
}

func (h *fakeHost) Unexport(_ context.Context, v *zfs.Volume) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.exported, v.Name)
	return nil
}

func (h *fakeHost) Lock(string) (func(), error) { return func() {}, nil }

func (h *fakeHost) is(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exported[name]
}

// fakePeer answers State from state (or err) and accepts every stream.
type fakePeer struct {
	state   api.VolumeState
	err     error
	streams []replication.StreamHeader
}

func (p *fakePeer) State(context.Context, string) (api.VolumeState, error) { return p.state, p.err }
func (p *fakePeer) SetReplicas(context.Context, api.SetReplicasRequest) (api.VolumeState, error) {
	return api.VolumeState{}, nil
}
func (p *fakePeer) Sync(context.Context, api.SyncRequest) (api.VolumeState, error) {
	return api.VolumeState{}, nil
}
func (p *fakePeer) Handover(context.Context, api.HandoverRequest) (api.HandoverResult, error) {
	return api.HandoverResult{}, nil
}
func (p *fakePeer) Promote(context.Context, api.PromoteRequest) (api.VolumeState, error) {
	return api.VolumeState{}, nil
}
func (p *fakePeer) DropReplica(context.Context, api.DropReplicaRequest) error { return nil }
func (p *fakePeer) Copy(context.Context, api.CopyRequest) error               { return nil }
func (p *fakePeer) Receive(_ context.Context, h replication.StreamHeader, write func(io.Writer) error) (api.VolumeState, int64, error) {
	if p.err != nil {
		return api.VolumeState{}, 0, p.err
	}
	p.streams = append(p.streams, h)
	return api.VolumeState{Volume: h.Volume, Exists: true, Latest: h.Snapshot}, 0, write(io.Discard)
}

func timeAt(n int64) time.Time { return time.Unix(0, 1000+n) }
