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
	"github.com/dots-csi/dots/pkg/zfs"
)

// Receive applies a stream from another server: a replica's increment or
// full stream, or a copy of a snapshot as a new volume. A stream older
// than this server's copy is refused (api.ErrStaleGeneration); a primary
// here of an older generation is demoted first (its divergent writes
// kept), then receives.
func (m *Manager) Receive(ctx context.Context, h replication.StreamHeader, r io.Reader) (api.VolumeState, error) {
	switch h.Kind {
	case replication.KindCopy:
		return m.receiveCopy(ctx, h, r)
	case replication.KindReplica:
	default:
		return api.VolumeState{}, fmt.Errorf("%w: stream kind %q", api.ErrInvalid, h.Kind)
	}
	if err := api.ValidateID(h.Volume); err != nil {
		return api.VolumeState{}, err
	}
	l := m.volumeLock(h.Volume)
	l.Lock()
	defer l.Unlock()
	st, err := m.pool.ReplicaState(ctx, h.Volume)
	if err != nil {
		return api.VolumeState{}, err
	}
	if st.Exists && h.Generation < st.Generation {
		return st, fmt.Errorf("volume %q: a stream of generation %d from %s, this server holds generation %d (%s): %w",
			h.Volume, h.Generation, h.Source, st.Generation, st.Role, api.ErrStaleGeneration)
	}
	if st.Exists && st.Role == api.RolePrimary {
		if h.Generation == st.Generation {
			return st, fmt.Errorf("volume %q: %s sends generation %d, which this server serves as primary: %w",
				h.Volume, h.Source, h.Generation, api.ErrNotReplica)
		}
		// A newer primary exists: this one is stale. The stream's base,
		// when held here, is the last common snapshot, and the increment
		// applies to the replica made from it.
		if _, err := m.demoteLocked(ctx, h.Volume, h.Source, h.Generation, h.Base); err != nil {
			return st, fmt.Errorf("demoting the stale primary of %q before receiving: %w", h.Volume, err)
		}
	}
	return m.pool.Receive(ctx, specOf(h), r)
}

// demoteStale demotes this server's primary of a volume that a newer
// generation superseded (a replica reported it).
func (m *Manager) demoteStale(ctx context.Context, p *primary, stale *staleError) error {
	l := m.volumeLock(p.name)
	l.Lock()
	defer l.Unlock()
	// What the newer copy holds, when held here too, is the last common
	// snapshot.
	_, err := m.demoteLocked(ctx, p.name, stale.peer.Server, stale.state.Generation, stale.state.Latest)
	return err
}

// demoteLocked turns the local primary of volume into a replica of
// primary's generation: unexported first, its writes kept whole in a
// diverged dataset, the replica a clone of the last common snapshot
// (common if held here, else the newest replication snapshot, taken now
// if there is none). The volume's lock is held.
func (m *Manager) demoteLocked(ctx context.Context, volume, primary string, generation uint64, common string) (string, error) {
	// Unconfirmed from now: nothing may export it again.
	if p := m.primaryOf(volume); p != nil {
		p.confirmed.Store(false)
	}
	unlock, err := m.lockHost(ctx, volume)
	if err != nil {
		return "", err
	}
	defer unlock()
	v, err := m.pool.GetVolume(ctx, volume)
	if err != nil {
		return "", err
	}
	if err := m.host.Unexport(ctx, v); err != nil {
		return "", fmt.Errorf("unexporting %s: %w", volume, err)
	}
	if common != "" {
		if ok, err := m.pool.HasReplSnapshot(ctx, volume, common); err != nil {
			return "", err
		} else if !ok {
			common = ""
		}
	}
	if common == "" {
		common = v.ReplLatest
	}
	if common == "" {
		if common, _, err = m.pool.ReplSnapshot(ctx, volume); err != nil {
			return "", err
		}
	}
	done := m.divergedChanging(volume) // one more from now
	diverged, err := m.pool.DemoteToReplica(ctx, volume, primary, generation, true, common)
	done()
	if err != nil {
		return diverged, err
	}
	m.forget(volume)
	klog.InfoS("Stale primary demoted: a newer generation serves the volume elsewhere; its writes are kept",
		"volume", volume, "generation", v.Generation, "newGeneration", generation, "newPrimary", primary, "diverged", diverged, "common", common)
	return diverged, nil
}

// lockHost takes the server's lock of a volume, waiting a little for a
// CSI call on it to finish (a demotion must not be skipped for long).
func (m *Manager) lockHost(ctx context.Context, volume string) (func(), error) {
	deadline := time.Now().Add(m.cfg.CallTimeout)
	delay := 10 * time.Millisecond
	for {
		unlock, err := m.host.Lock(volume)
		if err == nil || time.Now().After(deadline) {
			return unlock, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// receiveCopy creates a new volume from a full stream of another server's
// snapshot, and exports it.
func (m *Manager) receiveCopy(ctx context.Context, h replication.StreamHeader, r io.Reader) (api.VolumeState, error) {
	if h.Copy == nil {
		return api.VolumeState{}, fmt.Errorf("%w: a copy stream without its request", api.ErrInvalid)
	}
	spec, err := copySpec(*h.Copy)
	if err != nil {
		return api.VolumeState{}, err
	}
	unlock, err := m.lockHost(ctx, spec.Name)
	if err != nil {
		return api.VolumeState{}, err
	}
	defer unlock()
	v, err := m.pool.ReceiveNewVolume(ctx, spec, r)
	if errors.Is(err, zfs.ErrExists) && v != nil {
		err = nil // a retry of a copy that was received
	}
	if err != nil {
		return api.VolumeState{}, err
	}
	if err := m.host.Export(ctx, v); err != nil {
		return api.VolumeState{}, fmt.Errorf("exporting the copy %s: %w", v.Name, err)
	}
	return api.VolumeState{Volume: v.Name, Exists: true, Role: api.RolePrimary, Generation: v.Generation}, nil
}

// copySpec is the new volume of a copy: the create's parameters checked
// as CreateVolume checks them (api.ParseParams).
func copySpec(req api.CopyRequest) (zfs.VolumeSpec, error) {
	if err := api.ValidateID(req.Name); err != nil {
		return zfs.VolumeSpec{}, err
	}
	params, err := api.ParseParams(withoutReplication(req.Parameters))
	if err != nil {
		return zfs.VolumeSpec{}, err
	}
	props, err := zfs.ValidateProperties(params.Properties)
	if err != nil {
		return zfs.VolumeSpec{}, err
	}
	access := params.Access
	return zfs.VolumeSpec{Name: req.Name, Capacity: req.Capacity, Thick: params.Thick, Properties: props, Access: &access,
		Source: zfs.Source{Kind: zfs.SourceSnapshot, Name: req.Snapshot}}, nil
}

// withoutReplication drops the replication parameters, which the
// controller acts on and servers ignore.
func withoutReplication(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		if k != api.ParamReplicas && k != api.ParamReplicationInterval {
			out[k] = v
		}
	}
	return out
}
