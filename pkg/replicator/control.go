package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/replication"
)

// State is this server's copy of a volume: its role and generation, the
// newest replication snapshot it holds, on a primary each replica's
// status, and what was kept of divergent writes.
func (m *Manager) State(ctx context.Context, volume string) (api.VolumeState, error) {
	st, err := m.pool.ReplicaState(ctx, volume)
	if err != nil {
		return st, err
	}
	if p := m.primaryOf(volume); p != nil && st.Role == api.RolePrimary {
		st.Replicas = p.statuses(time.Now())
		st.Interval = p.intervalOf()
	}
	if st.Diverged, err = m.divergedOf(ctx, volume); err != nil {
		return st, err
	}
	return st, nil
}

// divergedTTL is how long a volume's list of diverged copies is reused:
// State is asked before every send, and the list changes only when this
// server demotes a copy (divergedChanging) or an operator removes one.
const divergedTTL = time.Minute

// divergedOf lists what was kept of a volume's divergent writes (cached).
// While the volume is being demoted the cache is neither read nor
// written, and a listing that began before a demotion's start or end is
// not stored: a State that sees the demoted role must see its diverged
// copy too.
func (m *Manager) divergedOf(ctx context.Context, volume string) ([]string, error) {
	m.mu.Lock()
	c, ok := m.diverged.list[volume]
	busy := m.diverged.changing[volume] > 0
	epoch := m.diverged.epoch
	m.mu.Unlock()
	if ok && !busy && time.Since(c.at) < divergedTTL {
		return c.list, nil
	}
	list, err := m.pool.DivergedCopies(ctx, volume)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.diverged.epoch == epoch && m.diverged.changing[volume] == 0 {
		m.diverged.list[volume] = divergedList{at: time.Now(), list: list}
	}
	m.mu.Unlock()
	return list, nil
}

// divergedChanging marks volume's diverged copies as changing until done
// is called (a demotion that keeps divergent writes).
func (m *Manager) divergedChanging(volume string) (done func()) {
	m.mu.Lock()
	m.diverged.begin(volume)
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		m.diverged.end(volume)
		m.mu.Unlock()
	}
}

// divergedCache is the cache of divergedOf; its methods need Manager.mu.
type divergedCache struct {
	list     map[string]divergedList // by volume
	changing map[string]int          // demotions in progress, by volume
	epoch    uint64                  // raised by every begin and end
}

func newDivergedCache() divergedCache {
	return divergedCache{list: map[string]divergedList{}, changing: map[string]int{}}
}

func (c *divergedCache) begin(volume string) {
	c.changing[volume]++
	delete(c.list, volume)
	c.epoch++
}

func (c *divergedCache) end(volume string) {
	if c.changing[volume]--; c.changing[volume] <= 0 {
		delete(c.changing, volume)
	}
	delete(c.list, volume)
	c.epoch++
}

// divergedList is a cached list of diverged copies.
type divergedList struct {
	at   time.Time
	list []string
}

// SetReplicas records a primary's replicas and interval and starts (or
// stops, with none) its replication; the first send starts at once and is
// not waited for.
func (m *Manager) SetReplicas(ctx context.Context, req api.SetReplicasRequest) (api.VolumeState, error) {
	if err := validPeers(req.Replicas, m.cfg.Server); err != nil {
		return api.VolumeState{}, err
	}
	if req.Interval != 0 && req.Interval < api.MinReplicationInterval {
		return api.VolumeState{}, fmt.Errorf("%w: replication interval %s is under %s", api.ErrInvalid, req.Interval, api.MinReplicationInterval)
	}
	l := m.volumeLock(req.Volume)
	l.Lock()
	defer l.Unlock()
	v, err := m.pool.SetReplicas(ctx, req.Volume, req.Replicas, req.Interval)
	if err != nil {
		return api.VolumeState{}, err
	}
	if len(v.Replicas) == 0 {
		m.forget(v.Name)
	} else {
		m.mu.Lock()
		p, ok := m.vols[v.Name]
		added := !ok
		if !ok {
			p = newPrimary(v.Name, v.Replicas, v.ReplInterval)
			// It is served already (this call found it a primary, and no
			// start-up hold was on it): nothing newer can exist.
			p.confirmed.Store(true)
			m.vols[v.Name] = p
		} else {
			added = p.configure(v.Replicas, v.ReplInterval)
		}
		m.startLocked(p)
		m.mu.Unlock()
		if added {
			p.poke() // a new replica's first send starts now
		} else {
			p.restart() // a new interval counts from now
		}
	}
	klog.InfoS("Replicas set", "volume", v.Name, "replicas", v.Replicas, "interval", v.ReplInterval)
	return m.State(ctx, v.Name)
}

// validPeers checks a replica list: named servers with addresses, none
// twice, never this server.
func validPeers(peers []api.Peer, self string) error {
	if len(peers) > api.MaxReplicas {
		return fmt.Errorf("%w: %d replicas, at most %d", api.ErrInvalid, len(peers), api.MaxReplicas)
	}
	seen := map[string]bool{}
	for _, r := range peers {
		switch {
		case r.Server == "" || r.Address == "":
			return fmt.Errorf("%w: a replica needs a server name and an address: %+v", api.ErrInvalid, r)
		case r.Server == self:
			return fmt.Errorf("%w: %s cannot be a replica of its own primary", api.ErrInvalid, self)
		case seen[r.Server]:
			return fmt.Errorf("%w: replica %s listed twice", api.ErrInvalid, r.Server)
		}
		seen[r.Server] = true
	}
	return nil
}

// Sync replicates a primary now and answers once every replica holds the
// new snapshot or failed (its LastError says why).
func (m *Manager) Sync(ctx context.Context, req api.SyncRequest) (api.VolumeState, error) {
	p := m.primaryOf(req.Volume)
	if p == nil {
		return api.VolumeState{}, fmt.Errorf("volume %q has no replicas here: %w", req.Volume, api.ErrNotPrimary)
	}
	if !p.confirmed.Load() {
		return api.VolumeState{}, fmt.Errorf("volume %q: %w", req.Volume, replication.ErrNotConfirmed)
	}
	p.step.Lock()
	if p.handingOver.Load() {
		p.step.Unlock()
		return api.VolumeState{}, fmt.Errorf("volume %q is being handed over: %w", req.Volume, api.ErrNotPrimary)
	}
	_, _, err := m.stepLocked(ctx, p) // replicas that failed: see their statuses
	p.step.Unlock()
	if err != nil {
		return api.VolumeState{}, err
	}
	m.refreshLag(p)
	return m.State(ctx, req.Volume)
}

// Handover stops serving a primary so another copy can take over without
// losing a write: unexport, a final snapshot sent to every replica, then
// the copy becomes a replica (same generation). A replica that fails the
// final send fails the handover, and the volume is served again.
func (m *Manager) Handover(ctx context.Context, req api.HandoverRequest) (api.HandoverResult, error) {
	p := m.primaryOf(req.Volume)
	if p == nil {
		return api.HandoverResult{}, fmt.Errorf("volume %q has no replicas here: %w", req.Volume, api.ErrNotPrimary)
	}
	if !p.confirmed.Load() {
		return api.HandoverResult{}, fmt.Errorf("volume %q: %w", req.Volume, replication.ErrNotConfirmed)
	}
	l := m.volumeLock(req.Volume)
	l.Lock()
	defer l.Unlock()
	unlock, err := m.lockHost(ctx, req.Volume)
	if err != nil {
		return api.HandoverResult{}, err
	}
	defer unlock()
	v, err := m.pool.GetVolume(ctx, req.Volume)
	if err != nil {
		return api.HandoverResult{}, err
	}
	if err := m.host.Unexport(ctx, v); err != nil {
		return api.HandoverResult{}, fmt.Errorf("unexporting %s: %w", v.Name, err)
	}
	// Marked before the final step and until the demotion is done: the
	// sender loop (or a Sync) waiting for the step lock must not take a
	// snapshot after the final one and send it (the promotion expects the
	// final one to be the newest everywhere).
	p.step.Lock()
	p.handingOver.Store(true)
	final, failed, err := m.stepLocked(ctx, p)
	p.step.Unlock()
	if err = errors.Join(err, failed); err != nil {
		p.handingOver.Store(false)
		if xerr := m.host.Export(ctx, v); xerr != nil {
			klog.ErrorS(xerr, "Serving a volume again after a failed handover", "volume", v.Name)
		}
		return api.HandoverResult{}, fmt.Errorf("handover of %s: the final send failed, the volume is served again: %w", v.Name, err)
	}
	p.confirmed.Store(false)
	if _, err := m.pool.DemoteToReplica(ctx, v.Name, m.cfg.Server, v.Generation, false, ""); err != nil {
		// Still a primary, unexported and unconfirmed: the loop confirms
		// it again and replicates as before.
		p.handingOver.Store(false)
		return api.HandoverResult{}, err
	}
	m.forget(v.Name)
	klog.InfoS("Volume handed over: every replica holds the final snapshot; this copy is a replica now", "volume", v.Name, "final", final)
	return api.HandoverResult{Final: final}, nil
}

// Promote makes this server's replica the primary, at req.Expect or its
// newest replication snapshot, with req.Generation, exported, replicating
// to req.Replicas. A retry of a promotion that happened answers as the
// first did.
func (m *Manager) Promote(ctx context.Context, req api.PromoteRequest) (api.VolumeState, error) {
	if err := api.ValidateID(req.Volume); err != nil {
		return api.VolumeState{}, err
	}
	if req.Generation == 0 {
		return api.VolumeState{}, fmt.Errorf("%w: a promotion needs a generation", api.ErrInvalid)
	}
	if err := validPeers(req.Replicas, m.cfg.Server); err != nil {
		return api.VolumeState{}, err
	}
	l := m.volumeLock(req.Volume)
	l.Lock()
	defer l.Unlock()
	st, err := m.pool.ReplicaState(ctx, req.Volume)
	if err != nil {
		return st, err
	}
	if !st.Exists {
		return st, fmt.Errorf("volume %q: %w", req.Volume, replication.ErrNoCopy)
	}
	if st.Role == api.RolePrimary && st.Generation != req.Generation {
		return st, fmt.Errorf("volume %q is a primary of generation %d here: %w", req.Volume, st.Generation, api.ErrNotReplica)
	}
	unlock, err := m.lockHost(ctx, req.Volume)
	if err != nil {
		return st, err
	}
	defer unlock()
	v, err := m.pool.PromoteReplica(ctx, req.Volume, req.Generation, req.Expect, req.Replicas, req.Interval)
	if err != nil {
		return st, err
	}
	// Registered confirmed before the export: the controller chose this
	// copy and raised the generation above every one it saw.
	if len(v.Replicas) > 0 {
		p := newPrimary(v.Name, v.Replicas, v.ReplInterval)
		p.confirmed.Store(true)
		// Every copy likely holds the snapshot the promotion started at
		// (the old primary sent it): kept as their base until each has
		// said what it holds, so a replica that is down now (the old
		// primary) gets an increment, not the whole volume, later.
		for _, r := range v.Replicas {
			p.observed(r.Server, v.ReplLatestTime)
		}
		m.mu.Lock()
		if old, ok := m.vols[v.Name]; ok && old.stop != nil {
			old.stop()
		}
		m.vols[v.Name] = p
		m.startLocked(p)
		m.mu.Unlock()
	}
	if err := m.host.Export(ctx, v); err != nil {
		return st, fmt.Errorf("exporting the promoted %s: %w", v.Name, err)
	}
	klog.InfoS("Replica promoted: this server serves the volume", "volume", v.Name, "generation", v.Generation, "at", v.ReplLatest, "replicas", v.Replicas)
	return m.State(ctx, v.Name)
}

// DropReplica destroys this server's replica of a volume (none: done).
func (m *Manager) DropReplica(ctx context.Context, req api.DropReplicaRequest) error {
	if err := api.ValidateID(req.Volume); err != nil {
		return err
	}
	l := m.volumeLock(req.Volume)
	l.Lock()
	defer l.Unlock()
	return m.pool.DropReplica(ctx, req.Volume)
}

// Copy sends a user snapshot whole to another server, which creates the
// new volume from it (O(data): a cross-server clone or restore).
func (m *Manager) Copy(ctx context.Context, req api.CopyRequest) error {
	if _, err := copySpec(req); err != nil {
		return err
	}
	if _, err := m.pool.GetSnapshot(ctx, req.Snapshot); err != nil {
		return err
	}
	c, err := m.cfg.Dial(req.To.Address)
	if err != nil {
		return err
	}
	h := replication.StreamHeader{Volume: req.Name, Snapshot: req.Snapshot, Source: m.cfg.Server, Kind: replication.KindCopy, Copy: &req}
	start := time.Now()
	_, n, err := c.Receive(ctx, h, func(w io.Writer) error { return m.pool.SendSnapshot(ctx, req.Snapshot, w) })
	m.m.sent.WithLabelValues(req.To.Server).Add(float64(n))
	if err != nil {
		m.m.failures.WithLabelValues(req.To.Server, reasonSend).Inc()
		return fmt.Errorf("copying snapshot %s to %s as %s: %w", req.Snapshot, req.To.Server, req.Name, err)
	}
	klog.InfoS("Snapshot copied to another server", "snapshot", req.Snapshot, "to", req.To.Server, "volume", req.Name, "bytes", n, "duration", time.Since(start))
	return nil
}
