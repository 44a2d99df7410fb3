package driver

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// progress counts a drain's or rebalance's moves and sends each line.
type progress struct {
	emit                func(api.MoveEvent)
	done, failed, total int
}

func (p *progress) send(ev api.MoveEvent) {
	switch ev.Kind {
	case api.MovePrimary, api.MoveReplica:
		p.done++
	case api.MoveFailed:
		// Nothing moved: bytes read before the failure would read as
		// moved ones (and, volumes alike, as another volume's).
		p.failed++
		ev.Bytes = 0
	}
	ev.Time, ev.Done, ev.Failed, ev.Total = time.Now().UTC(), p.done, p.failed, p.total
	p.emit(ev)
}

// Drain moves every volume off a server: each primary moves to another
// server (a copy made there, the source hands over, the copy promoted,
// the source's copy dropped) and each replica it holds is replaced by one
// elsewhere; the number of copies of each volume stays the same. One line
// is emitted per volume, then a MoveDone line. A volume that fails is
// reported and the rest go on; ctx ends it between volumes (a move under
// way finishes). Snapshots stay on the server: they are not replicated.
func (c *ControllerServer) Drain(ctx context.Context, server string, emit func(api.MoveEvent)) error {
	if _, ok := c.servers.Get(server); !ok {
		return fmt.Errorf("%w: no storage server %q", api.ErrInvalid, server)
	}
	recs, err := c.placements.List(ctx)
	if err != nil {
		return fmt.Errorf("%w: listing placements: %v", errUnavailable, err)
	}
	var primaries, replicas []placements.Record
	for _, r := range recs {
		switch {
		case r.Kind != placements.Volume:
		case r.Server == server:
			primaries = append(primaries, r)
		case slices.Contains(r.Replicas, server):
			replicas = append(replicas, r)
		}
	}
	p := &progress{emit: emit, total: len(primaries) + len(replicas)}
	p.send(api.MoveEvent{Kind: api.MovePlan, From: server})
	for _, r := range primaries {
		if ctx.Err() != nil {
			break
		}
		p.send(c.moveOff(context.WithoutCancel(ctx), r.ID, server, "", ReasonDrain))
	}
	for _, r := range replicas {
		if ctx.Err() != nil {
			break
		}
		p.send(c.replaceReplica(context.WithoutCancel(ctx), r.ID, server))
	}
	end := api.MoveEvent{Kind: api.MoveDone, From: server}
	if ctx.Err() != nil {
		end.Error = "stopped: " + ctx.Err().Error()
	}
	p.send(end)
	return nil
}

// volumeSize reads a volume's capacity and used bytes from its primary.
func (c *ControllerServer) volumeSize(ctx context.Context, m *registry.Member, id string) (capacity, used int64, err error) {
	cctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
	defer cancel()
	resp, err := m.Controller.ControllerGetVolume(cctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		return 0, 0, err
	}
	used, _ = strconv.ParseInt(resp.GetVolume().GetVolumeContext()[api.ContextUsedBytes], 10, 64)
	return resp.GetVolume().GetCapacityBytes(), used, nil
}

// moveOff moves a volume's primary from server from to target ("": the
// healthy server with the most free space holding no copy of it), keeping
// its number of copies: the target gets a replica (recorded first, so a
// crash leaves no copy unrecorded), is synced, the primary hands over, the
// target is promoted with the volume's other replicas, and the source's
// copy is dropped.
func (c *ControllerServer) moveOff(ctx context.Context, id, from, target, reason string) api.MoveEvent {
	ev := api.MoveEvent{Kind: api.MovePrimary, Volume: id, From: from}
	failed := func(err error) api.MoveEvent {
		ev.Kind, ev.Error = api.MoveFailed, err.Error()
		klog.ErrorS(err, "Moving a volume failed", "volume", id, "from", from, "to", ev.To, "reason", reason)
		return ev
	}
	unlock, err := c.locks.Acquire("volume/" + id)
	if err != nil {
		return failed(err)
	}
	defer unlock()
	rec, ok, err := c.placements.Lookup(ctx, placements.Volume, id)
	switch {
	case err != nil:
		return failed(err)
	case !ok:
		return failed(fmt.Errorf("volume %q: no placement record (deleted meanwhile?)", id))
	case rec.Server != from:
		return failed(fmt.Errorf("volume %q: its primary is %s now, not %s", id, rec.Server, from))
	}
	ev.Volume = rec.ClusterID()
	src, ok := c.servers.Get(from)
	if !ok {
		return failed(fmt.Errorf("%w: server %q not known now", errUnavailable, from))
	}
	size, used, err := c.volumeSize(ctx, src, id)
	if err != nil {
		return failed(fmt.Errorf("reading the volume's size on %s: %w", from, err))
	}
	ev.Bytes = used
	if target == "" && rec.Replicated() {
		return c.promoteReplicaOff(ctx, rec, ev, reason)
	}
	if target == "" {
		// The volume's only copy moves: no zone to keep away from.
		ms, err := c.placeAway(1, size, rec.Servers(), nil)
		if err != nil {
			return failed(err)
		}
		target = ms[0].Name
	} else if slices.Contains(rec.Servers(), target) {
		return failed(fmt.Errorf("%w: server %q already holds a copy of volume %q", api.ErrInvalid, target, id))
	}
	ev.To = target
	others := append([]string{}, rec.Replicas...) // not nil: the source is not kept
	mid := rec
	mid.Replicas = append(slices.Clone(rec.Replicas), target)
	if mid.Interval <= 0 {
		mid.Interval = api.DefaultReplicationInterval
	}
	if err := c.placements.Update(ctx, rec, mid); err != nil {
		return failed(err)
	}
	if err := c.replicateTo(ctx, src, mid); err != nil {
		c.undoReplica(ctx, mid, rec, target)
		return failed(err)
	}
	res, next, err := c.promote(ctx, mid, target, reason, others, true)
	if err != nil {
		if !res.HandedOver { // the source still serves
			c.undoReplica(ctx, mid, rec, target)
			return failed(err)
		}
		if res.To == "" {
			// Handed over, but the target would not take over: the
			// source, which took the final snapshot, serves again.
			return failed(c.reinstate(ctx, mid, rec, target, res.Snapshot, err))
		}
		return failed(err)
	}
	ev.Generation = next.Gen()
	if err := c.dropReplica(ctx, from, id); err != nil {
		// Moved all the same: the copy left on the source is not
		// recorded, and the line says so.
		ev.Error = fmt.Sprintf("moved, but the copy on %s was not dropped: %v", from, err)
	}
	return ev
}

// reinstate makes a move's source the primary again after it handed over
// (at final) and the target refused to take over: promoted at final with
// a new generation, replicating to its replicas as before the move; the
// copy on drop (if any: one made for the move) is dropped. It returns
// what to report: why the move failed, and whether the source serves
// again.
func (c *ControllerServer) reinstate(ctx context.Context, mid, back placements.Record, drop, final string, cause error) error {
	src, ok := c.servers.Get(back.Server)
	if !ok {
		return fmt.Errorf("%w; the source %s is not known now: promote the volume to serve it", cause, back.Server)
	}
	rs, err := replService(src)
	if err != nil {
		return fmt.Errorf("%w; %v", cause, err)
	}
	gen := mid.Gen()
	for _, s := range c.states(ctx, mid.ID, mid.Servers()) {
		gen = max(gen, s.st.Generation)
	}
	gen++
	peers, err := c.peers(back.Replicas)
	if err != nil {
		return fmt.Errorf("%w; %v: promote the volume to serve it", cause, err)
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	if _, err := rs.Promote(cctx, api.PromoteRequest{Volume: mid.ID, Generation: gen, Expect: final, Interval: mid.Interval, Replicas: peers}); err != nil {
		return fmt.Errorf("%w; serving it again on %s failed too (%v): promote the volume to serve it", cause, back.Server, err)
	}
	next := back.Moved(back.Server, back.Replicas, gen)
	next.Interval = mid.Interval
	if err := c.placements.Update(ctx, mid, next); err != nil {
		return fmt.Errorf("%w; %s serves it again, but its record was not updated: %v", cause, back.Server, err)
	}
	if drop != "" {
		if err := c.dropReplica(ctx, drop, mid.ID); err != nil {
			klog.ErrorS(err, "Dropping the copy of a move that did not happen", "volume", mid.ID, "server", drop)
		}
	}
	klog.InfoS("A move failed after its handover: the source serves the volume again", "volume", mid.ID, "server", back.Server, "generation", gen, "err", cause)
	return fmt.Errorf("%w; %s serves it again (generation %d)", cause, back.Server, gen)
}

// replicateTo sets a primary's replicas to the record's and waits until
// each holds a new snapshot.
func (c *ControllerServer) replicateTo(ctx context.Context, primary *registry.Member, rec placements.Record) error {
	if err := c.replicasOnly(ctx, primary, rec); err != nil {
		return err
	}
	rs, _ := replService(primary) // replicasOnly checked it
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	st, err := rs.Sync(cctx, api.SyncRequest{Volume: rec.ID})
	if err != nil {
		return fmt.Errorf("syncing %q from %s: %w", rec.ID, primary.Name, err)
	}
	for _, r := range st.Replicas {
		if r.LastError != "" {
			return fmt.Errorf("syncing %q from %s to %s: %s", rec.ID, primary.Name, r.Server, r.LastError)
		}
	}
	return nil
}

// undoReplica takes back a replica added for a move that did not happen:
// the primary stops sending to it, its copy is dropped, and the record
// returns to what it was.
func (c *ControllerServer) undoReplica(ctx context.Context, mid, back placements.Record, server string) {
	if m, ok := c.servers.Get(back.Server); ok {
		undo := back
		undo.Interval = mid.Interval
		if err := c.replicasOnly(ctx, m, undo); err != nil {
			klog.ErrorS(err, "Taking back a replica added for a move", "volume", back.ID, "replica", server)
		}
	}
	if err := c.dropReplica(ctx, server, back.ID); err != nil {
		klog.ErrorS(err, "Dropping a replica added for a move; it stays in the record", "volume", back.ID, "replica", server)
		return
	}
	if err := c.placements.Update(ctx, mid, back); err != nil {
		klog.ErrorS(err, "Restoring a record after a move that did not happen", "volume", back.ID)
	}
}

// replaceReplica replaces the replica a server holds of a volume by a new
// one on the healthy server with the most free space holding no copy: the
// new one is recorded and synced before the old one is dropped.
func (c *ControllerServer) replaceReplica(ctx context.Context, id, from string) api.MoveEvent {
	ev := api.MoveEvent{Kind: api.MoveReplica, Volume: id, From: from}
	unlock, err := c.locks.Acquire("volume/" + id)
	if err != nil {
		return replaceFailed(ev, err)
	}
	defer unlock()
	rec, ok, err := c.placements.Lookup(ctx, placements.Volume, id)
	switch {
	case err != nil:
		return replaceFailed(ev, err)
	case !ok || !slices.Contains(rec.Replicas, from):
		return replaceFailed(ev, fmt.Errorf("volume %q: %s holds no replica of it now", id, from))
	}
	return c.replaceLocked(ctx, rec, from)
}

func replaceFailed(ev api.MoveEvent, err error) api.MoveEvent {
	ev.Kind, ev.Error = api.MoveFailed, err.Error()
	klog.ErrorS(err, "Replacing a replica failed", "volume", ev.Volume, "from", ev.From, "to", ev.To)
	return ev
}

// replaceLocked is replaceReplica under the volume's lock, from its record.
func (c *ControllerServer) replaceLocked(ctx context.Context, rec placements.Record, from string) api.MoveEvent {
	ev := api.MoveEvent{Kind: api.MoveReplica, Volume: rec.ClusterID(), From: from}
	primary, ok := c.servers.Get(rec.Server)
	if !ok {
		return replaceFailed(ev, fmt.Errorf("%w: its primary %q is not known now", errUnavailable, rec.Server))
	}
	size, used, err := c.volumeSize(ctx, primary, rec.ID)
	if err != nil {
		return replaceFailed(ev, fmt.Errorf("reading the volume's size on %s: %w", rec.Server, err))
	}
	ev.Bytes = used
	// Away from the zones of the copies that stay, not of the one leaving.
	stay := slices.DeleteFunc(rec.Servers(), func(s string) bool { return s == from })
	ms, err := c.placeAway(1, size, rec.Servers(), stay)
	if err != nil {
		return replaceFailed(ev, err)
	}
	ev.To = ms[0].Name
	mid := rec
	mid.Replicas = append(slices.Clone(rec.Replicas), ev.To)
	if err := c.placements.Update(ctx, rec, mid); err != nil {
		return replaceFailed(ev, err)
	}
	if err := c.replicateTo(ctx, primary, mid); err != nil {
		c.undoReplica(ctx, mid, rec, ev.To)
		return replaceFailed(ev, err)
	}
	next := mid
	next.Replicas = slices.DeleteFunc(slices.Clone(mid.Replicas), func(s string) bool { return s == from })
	if err := c.replicasOnly(ctx, primary, next); err != nil {
		return replaceFailed(ev, err)
	}
	if err := c.placements.Update(ctx, mid, next); err != nil {
		return replaceFailed(ev, err)
	}
	ev.Generation = next.Gen()
	if err := c.dropReplica(ctx, from, rec.ID); err != nil {
		ev.Error = fmt.Sprintf("replaced, but the replica on %s was not dropped: %v", from, err)
	}
	return ev
}

// promoteReplicaOff moves a replicated volume's primary off server
// ev.From onto its replica with the most free space (its data is there
// already: only the last increment moves), then replaces the source's
// copy, a replica now, by a new one elsewhere, so the volume keeps its
// number of copies. If no server can take that copy, the source keeps it
// and the line says so.
func (c *ControllerServer) promoteReplicaOff(ctx context.Context, rec placements.Record, ev api.MoveEvent, reason string) api.MoveEvent {
	target, free := "", int64(-1)
	for _, s := range rec.Replicas {
		if m, ok := c.servers.Get(s); ok {
			if st := m.Status(); st.Healthy && st.Available > free {
				target, free = s, st.Available
			}
		}
	}
	if target == "" {
		ev.Kind, ev.Error = api.MoveFailed, fmt.Sprintf("no replica of %s is healthy to take over", rec.ID)
		return ev
	}
	ev.To = target
	after := slices.DeleteFunc(slices.Clone(rec.Replicas), func(s string) bool { return s == target })
	after = append(after, ev.From)
	_, next, err := c.promote(ctx, rec, target, reason, after, true)
	if err != nil {
		ev.Kind, ev.Error = api.MoveFailed, err.Error()
		klog.ErrorS(err, "Moving a volume failed", "volume", rec.ID, "from", ev.From, "to", target, "reason", reason)
		return ev
	}
	ev.Generation = next.Gen()
	if rep := c.replaceLocked(ctx, next, ev.From); rep.Kind == api.MoveFailed {
		ev.Error = fmt.Sprintf("moved, but its copy on %s (a replica now) was not replaced: %s", ev.From, rep.Error)
	} else if rep.Error != "" {
		ev.Error = rep.Error
	}
	return ev
}
