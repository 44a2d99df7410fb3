package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/replication"
	"github.com/dots-csi/dots/pkg/zfs"
)

// errGone: the volume is no longer a primary here (deleted, handed over,
// demoted): its loop ends.
var errGone = errors.New("no longer a replicated primary here")

// staleError: a replica holds a newer generation than this primary.
type staleError struct {
	peer  api.Peer
	state api.VolumeState
}

func (e *staleError) Error() string {
	return fmt.Sprintf("%v: %s holds generation %d (%s)", api.ErrStaleGeneration, e.peer.Server, e.state.Generation, e.state.Role)
}
func (e *staleError) Unwrap() error { return api.ErrStaleGeneration }

// loop is one replicated primary's life on this server: confirmed first
// (start-up rule), then a step every interval until it stops being a
// replicated primary here or ctx ends.
func (m *Manager) loop(ctx context.Context, p *primary) {
	for {
		var err error
		if !p.confirmed.Load() {
			err = m.confirm(ctx, p)
		} else {
			err = m.step(ctx, p)
		}
		m.refreshLag(p)
		var stale *staleError
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errGone):
			klog.InfoS("Replication stopped: the volume is no longer a primary here", "volume", p.name)
			m.forgetPrimary(p)
			return
		case errors.As(err, &stale):
			if derr := m.demoteStale(ctx, p, stale); derr != nil {
				klog.ErrorS(derr, "Demoting a stale primary; tried again next interval", "volume", p.name)
			} else {
				return
			}
		case err != nil:
			klog.V(2).InfoS("Replication step incomplete", "volume", p.name, "err", err)
		}
		if !p.wait(ctx) {
			return
		}
	}
}

func (m *Manager) refreshLag(p *primary) {
	if m.primaryOf(p.name) != p {
		return // forgotten meanwhile: its series are gone
	}
	for _, st := range p.statuses(time.Now()) {
		m.m.lag.WithLabelValues(p.name, st.Server).Set(st.LagSeconds)
	}
}

// confirm applies the start-up rule: every replica is asked; one holding a
// newer generation makes this copy stale (demoted); all of them answering
// without a newer one confirm it (exported); any one not answering keeps
// it unexported until the next try.
//
// Every replica, not one nor a majority: a promotion raises the generation
// on the promoted copy only, and the others learn it from that copy's
// first stream. With replicas B and C, B promoted and down before it sent
// to C, C still holds the old generation: any answer short of B's could
// confirm a stale primary. The price is availability: a restarted primary
// one of whose replicas is gone for good waits until the controller
// replaces that replica (drain of the lost server) or promotes another
// copy.
func (m *Manager) confirm(ctx context.Context, p *primary) error {
	v, err := m.pool.GetVolume(ctx, p.name)
	if errors.Is(err, zfs.ErrNotFound) {
		return errGone
	} else if err != nil {
		return err
	}
	peers := p.peers()
	states := make([]api.VolumeState, len(peers))
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, r := range peers {
		wg.Go(func() {
			cctx, cancel := m.callCtx(ctx)
			defer cancel()
			c, err := m.cfg.Dial(r.Address)
			if err == nil {
				states[i], err = c.State(cctx, p.name)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	answered := 0
	for i, r := range peers {
		if errs[i] != nil {
			m.m.failures.WithLabelValues(r.Server, reasonStartup).Inc()
			continue
		}
		if states[i].Exists && states[i].Generation > v.Generation {
			return &staleError{peer: r, state: states[i]}
		}
		if states[i].Role == api.RolePrimary {
			// Two primaries of one generation: no promotion made that, and
			// neither may be taken for the other's replica.
			errs[i] = fmt.Errorf("%s serves generation %d as primary too: %w", r.Server, states[i].Generation, api.ErrNotReplica)
			klog.ErrorS(errs[i], "Replicated primary not served: a replica answers as a primary of the same generation", "volume", p.name)
			continue
		}
		answered++
	}
	if answered < len(peers) {
		klog.InfoS("Replicated primary not served: not every replica answered to confirm that no newer generation exists; asked again next interval",
			"volume", p.name, "generation", v.Generation, "replicas", peers, "answered", answered, "errors", errors.Join(errs...))
		return fmt.Errorf("%w: %v", replication.ErrUnreachable, errors.Join(errs...))
	}
	unlock, err := m.host.Lock(p.name)
	if err != nil {
		return err // a CSI call on it: next interval
	}
	defer unlock()
	p.confirmed.Store(true)
	m.mu.Lock()
	m.updateWaitingLocked()
	m.mu.Unlock()
	if err := m.host.Export(ctx, v); err != nil {
		return fmt.Errorf("exporting confirmed primary %s: %w", p.name, err) // the reconciler retries
	}
	klog.InfoS("Replicated primary confirmed by its replicas and served", "volume", p.name, "generation", v.Generation, "answered", answered)
	return nil
}

// step takes one replication snapshot and sends it to every replica.
// Replicas that fail keep their base (the newest snapshot they hold) for
// the next step; the others' older snapshots are pruned on both sides.
func (m *Manager) step(ctx context.Context, p *primary) error {
	p.step.Lock()
	defer p.step.Unlock()
	if p.handingOver.Load() {
		return nil // Handover's final step is the last one (control.go)
	}
	_, failed, err := m.stepLocked(ctx, p)
	return errors.Join(err, failed)
}

// stepLocked is step with p.step held. It returns the snapshot taken, the
// replicas' failures (failed; their statuses say the same), and err when
// the step could not run or this primary turned out stale.
func (m *Manager) stepLocked(ctx context.Context, p *primary) (snap string, failed, err error) {
	v, err := m.pool.GetVolume(ctx, p.name)
	if errors.Is(err, zfs.ErrNotFound) {
		return "", nil, errGone
	} else if err != nil {
		return "", nil, err
	}
	if len(v.Replicas) == 0 {
		return "", nil, errGone
	}
	snap, at, err := m.pool.ReplSnapshot(ctx, p.name)
	if err != nil {
		for _, r := range p.peers() {
			m.m.failures.WithLabelValues(r.Server, reasonSnapshot).Inc()
		}
		return "", nil, fmt.Errorf("replication snapshot of %s: %w", p.name, err)
	}
	peers := p.peers()
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, r := range peers {
		wg.Go(func() { errs[i] = m.sendTo(ctx, p, v, r, snap, at) })
	}
	wg.Wait()
	// What a replica that failed holds stays: its next increment starts
	// there.
	var keep []string
	for i, r := range peers {
		if errs[i] != nil {
			if t := p.known(r.Server); !t.IsZero() {
				keep = append(keep, zfs.ReplSnapshotName(t))
			}
		}
	}
	if err := m.pool.ReplicationSent(ctx, p.name, snap, keep); err != nil {
		klog.ErrorS(err, "Pruning replication snapshots", "volume", p.name)
	}
	for i, err := range errs {
		var stale *staleError
		if errors.As(err, &stale) {
			return snap, nil, err
		}
		if err != nil {
			errs[i] = fmt.Errorf("replica %s: %w", peers[i].Server, err)
		}
	}
	return snap, errors.Join(errs...), nil
}

// sendTo brings one replica to snap: its state first (which base it
// holds, which generation), then the stream.
func (m *Manager) sendTo(ctx context.Context, p *primary, v *zfs.Volume, r api.Peer, snap string, at time.Time) (err error) {
	start := time.Now()
	var sent int64
	reason := reasonSend
	defer func() {
		m.m.duration.Observe(time.Since(start).Seconds())
		m.m.sent.WithLabelValues(r.Server).Add(float64(sent))
		if err == nil {
			if p.synced(r.Server, at, sent) {
				klog.InfoS("Replica in sync again", "volume", p.name, "replica", r.Server, "snapshot", snap)
			}
			return
		}
		var stale *staleError
		if errors.As(err, &stale) {
			reason = reasonStale
		}
		m.m.failures.WithLabelValues(r.Server, reason).Inc()
		level := klog.Level(0)
		if !p.failed(r.Server, sent, err) {
			level = 2 // the same as last time: counted, logged once
		}
		klog.V(level).InfoS("Replication to a replica failed; retried next interval", "volume", p.name, "replica", r.Server, "reason", reason, "err", err)
	}()
	c, err := m.cfg.Dial(r.Address)
	if err != nil {
		reason = reasonUnreachable
		return err
	}
	cctx, cancel := m.callCtx(ctx)
	st, err := c.State(cctx, p.name)
	cancel()
	if err != nil {
		reason = reasonUnreachable
		return err
	}
	if st.Exists && st.Generation > v.Generation {
		return &staleError{peer: r, state: st}
	}
	if st.Exists && st.Role == api.RoleReplica {
		p.observed(r.Server, st.LatestTime) // after a restart: what it already holds
	}
	base := ""
	if st.Exists && st.Latest != "" && st.Latest != snap {
		if ok, err := m.pool.HasReplSnapshot(ctx, p.name, st.Latest); err != nil {
			return err
		} else if ok {
			base = st.Latest
		}
	}
	spec := zfs.ReplicaSpecOf(v, m.cfg.Server, snap, base)
	// Listed after snap was taken: every user snapshot the stream carries
	// is listed, so the replica keeps it.
	if spec.UserSnapshots, err = m.pool.UserSnapshotsOf(ctx, p.name); err != nil {
		return err
	}
	h := headerOf(spec)
	_, sent, err = c.Receive(ctx, h, func(w io.Writer) error { return m.pool.Send(ctx, p.name, base, snap, w) })
	if errors.Is(err, api.ErrStaleGeneration) {
		return &staleError{peer: r, state: api.VolumeState{Volume: p.name, Exists: true, Generation: v.Generation + 1}}
	}
	if err == nil {
		klog.V(2).InfoS("Replica synced", "volume", p.name, "replica", r.Server, "snapshot", snap, "base", base, "bytes", sent, "duration", time.Since(start))
	}
	return err
}

// headerOf is the stream header carrying spec.
func headerOf(spec zfs.ReceiveSpec) replication.StreamHeader {
	h := replication.StreamHeader{Volume: spec.Volume, Snapshot: spec.Snapshot, Base: spec.Base, Generation: spec.Generation,
		Source: spec.Primary, Capacity: spec.Capacity, Thick: spec.Thick, Properties: spec.Properties, Access: spec.Access,
		Created: spec.Created, Kind: replication.KindReplica, UserSnapshots: convertSnaps(spec.UserSnapshots, func(u zfs.UserSnapshot) replication.UserSnapshot {
			return replication.UserSnapshot(u)
		})}
	for _, p := range spec.Published {
		h.Published = append(h.Published, replication.Publication{Node: p.Node, ReadOnly: p.ReadOnly})
	}
	return h
}

// specOf is the receive spec a stream header carries.
func specOf(h replication.StreamHeader) zfs.ReceiveSpec {
	spec := zfs.ReceiveSpec{Volume: h.Volume, Snapshot: h.Snapshot, Base: h.Base, Generation: h.Generation, Primary: h.Source,
		Capacity: h.Capacity, Thick: h.Thick, Properties: h.Properties, Access: h.Access, Created: h.Created,
		UserSnapshots: convertSnaps(h.UserSnapshots, func(u replication.UserSnapshot) zfs.UserSnapshot { return zfs.UserSnapshot(u) })}
	for _, p := range h.Published {
		spec.Published = append(spec.Published, zfs.Publication{Node: p.Node, ReadOnly: p.ReadOnly})
	}
	return spec
}

// convertSnaps converts a stream header's user snapshot list, keeping nil
// (no list) apart from empty (none).
func convertSnaps[F, T any](in []F, conv func(F) T) []T {
	if in == nil {
		return nil
	}
	out := make([]T, 0, len(in))
	for _, u := range in {
		out = append(out, conv(u))
	}
	return out
}
