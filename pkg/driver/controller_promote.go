package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// Reasons of a promotion (dots_volume_promotions_total{reason}).
const (
	ReasonManual    = "manual"
	ReasonUnhealthy = "unhealthy"
	ReasonDrain     = "drain"
	ReasonRebalance = "rebalance"
)

// errNotReplicated: a promotion of a volume without replicas.
var errNotReplicated = errors.New("the volume has no replicas")

// Promote makes another copy of a replicated volume its primary: the one
// on server to, or ("") the replica holding the newest state. The old
// primary, if it answers, hands over first (unexported, its last writes
// sent to every replica), so no write is lost; if it does not, the new
// primary serves the newest replicated state and the old one, when it
// comes back holding an older generation, never exports it (it demotes
// itself, keeping what diverged). The new generation is above every one
// seen; the record moves by compare-and-swap; then the VolumeMoved hook
// is told.
func (c *ControllerServer) Promote(ctx context.Context, volumeID, to, reason string) (api.PromoteVolumeResult, error) {
	_, id, err := api.ParseID(volumeID)
	if err != nil {
		return api.PromoteVolumeResult{}, fmt.Errorf("volume %q: %w", volumeID, err)
	}
	unlock, err := c.locks.Acquire("volume/" + id)
	if err != nil {
		return api.PromoteVolumeResult{}, err
	}
	defer unlock()
	rec, err := c.replicatedRecord(ctx, id)
	if err != nil {
		return api.PromoteVolumeResult{}, err
	}
	if to != "" && !slices.Contains(rec.Replicas, to) {
		return api.PromoteVolumeResult{}, fmt.Errorf("%w: server %q holds no replica of volume %q (its replicas: %v)", api.ErrInvalid, to, volumeID, rec.Replicas)
	}
	res, _, err := c.promote(ctx, rec, to, reason, nil, false)
	if err != nil && res.HandedOver && res.To == "" {
		// Handed over, but no replica took over: the old primary, which
		// took the final snapshot, serves again rather than nobody.
		err = c.reinstate(ctx, rec, rec, "", res.Snapshot, err)
	}
	return res, err
}

// replicatedRecord reads a volume's record, which must name replicas.
func (c *ControllerServer) replicatedRecord(ctx context.Context, id string) (placements.Record, error) {
	rec, ok, err := c.placements.Lookup(ctx, placements.Volume, id)
	switch {
	case err != nil:
		return rec, fmt.Errorf("%w: reading where volume %q is: %v", errUnavailable, id, err)
	case !ok:
		return rec, fmt.Errorf("volume %q: %w: no placement record", id, errNotFound)
	case !rec.Replicated():
		return rec, fmt.Errorf("volume %q on %s: %w", id, rec.Server, errNotReplicated)
	}
	return rec, nil
}

// handover asks a primary to hand a volume over. handedOver is false when
// its server does not answer (the promotion goes on without it); a
// primary that handed over already (a retried promotion) reports the
// snapshot it handed over at.
func (c *ControllerServer) handover(ctx context.Context, rec placements.Record) (final string, handedOver bool, err error) {
	m, ok := c.servers.Get(rec.Server)
	if !ok || !m.Status().Healthy {
		return "", false, nil
	}
	rs, err := replService(m)
	if err != nil {
		return "", false, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	hr, err := rs.Handover(cctx, api.HandoverRequest{Volume: rec.ID})
	switch {
	case err == nil:
		return hr.Final, true, nil
	case status.Code(err) == codes.Unavailable && ctx.Err() == nil:
		klog.InfoS("The primary does not answer: promoting without a handover", "volume", rec.ID, "primary", rec.Server, "err", err)
		return "", false, nil
	case errors.Is(err, api.ErrNotPrimary) || status.Code(err) == codes.FailedPrecondition:
		st, serr := rs.State(cctx, rec.ID)
		switch {
		case serr != nil:
			return "", false, fmt.Errorf("handover of %q on %s refused (%v), and its state unknown: %w", rec.ID, rec.Server, err, serr)
		case !st.Exists:
			return "", false, nil
		case st.Role == api.RoleReplica:
			return st.Latest, true, nil // handed over by an earlier attempt
		}
	}
	return "", false, fmt.Errorf("handover of volume %q on %s: %w", rec.ID, rec.Server, err)
}

// copyState is what one server answered of its copy.
type copyState struct {
	server string
	st     api.VolumeState
	err    error
}

// states asks each server for its copy of the volume, in order.
func (c *ControllerServer) states(ctx context.Context, id string, servers []string) []copyState {
	out := make([]copyState, len(servers))
	for i, s := range servers {
		out[i].server = s
		m, ok := c.servers.Get(s)
		if !ok {
			out[i].err = fmt.Errorf("%w: server %q not known now", errUnavailable, s)
			continue
		}
		rs, err := replService(m)
		if err != nil {
			out[i].err = err
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
		out[i].st, out[i].err = rs.State(cctx, id)
		cancel()
	}
	return out
}

// pickTarget is to when given (it must hold a copy), else the replica
// whose newest replication snapshot is the newest (ties: record order).
func pickTarget(states []copyState, to string) (copyState, error) {
	var best *copyState
	var errs []string
	for i := range states {
		s := &states[i]
		switch {
		case s.err != nil:
			errs = append(errs, fmt.Sprintf("%s: %v", s.server, s.err))
			continue
		case !s.st.Exists:
			errs = append(errs, s.server+": holds no copy")
			continue
		}
		if to != "" {
			if s.server == to {
				return *s, nil
			}
			continue
		}
		if best == nil || s.st.LatestTime.After(best.st.LatestTime) {
			best = s
		}
	}
	if best == nil {
		return copyState{}, fmt.Errorf("%w: no replica can be promoted: %v", errUnavailable, errs)
	}
	return *best, nil
}

// promote moves rec's primary to a replica (to, or the newest). after
// lists the replicas the new primary replicates to; nil: the others and
// the old primary (which, handed over or stale, is a replica now). With
// needHandover (a drain: nothing may be lost), a primary that does not
// answer stops it. It returns the record written; res.To is set once a
// server was promoted.
func (c *ControllerServer) promote(ctx context.Context, rec placements.Record, to, reason string, after []string, needHandover bool) (api.PromoteVolumeResult, placements.Record, error) {
	res := api.PromoteVolumeResult{Volume: rec.ClusterID(), From: rec.Server, Reason: reason}
	final, handedOver, err := c.handover(ctx, rec)
	if err != nil {
		return res, rec, err
	}
	res.HandedOver = handedOver
	if handedOver {
		res.Snapshot = final // replaced by what the new primary serves
	}
	if needHandover && !handedOver {
		return res, rec, fmt.Errorf("%w: volume %q: its primary %s did not hand over (not answering)", errUnavailable, rec.ID, rec.Server)
	}
	states := c.states(ctx, rec.ID, rec.Replicas)
	target, err := pickTarget(states, to)
	if err != nil {
		return res, rec, err
	}
	gen := rec.Gen()
	for _, s := range states {
		gen = max(gen, s.st.Generation)
	}
	gen++
	if after == nil {
		for _, s := range rec.Replicas {
			if s != target.server {
				after = append(after, s)
			}
		}
		if _, known := c.servers.Get(rec.Server); known {
			after = append(after, rec.Server)
		}
	}
	peers, err := c.peers(after)
	if err != nil {
		return res, rec, err
	}
	interval := rec.Interval
	if interval <= 0 {
		interval = target.st.Interval
	}
	if interval <= 0 {
		interval = api.DefaultReplicationInterval
	}
	m, _ := c.servers.Get(target.server)
	rs, err := replService(m)
	if err != nil {
		return res, rec, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	st, err := rs.Promote(cctx, api.PromoteRequest{Volume: rec.ID, Generation: gen, Expect: final, Interval: interval, Replicas: peers})
	if err != nil {
		return res, rec, fmt.Errorf("promoting volume %q on %s (generation %d): %w", rec.ID, target.server, gen, err)
	}
	res.To = target.server
	next := rec.Moved(target.server, after, gen)
	next.Interval = interval
	if err := c.placements.Update(ctx, rec, next); err != nil {
		// The server serves it; the next promotion or a retry finds the
		// record behind. Said loudly: routing follows the record.
		klog.ErrorS(err, "Volume promoted, but its record was not updated", "volume", rec.ID, "primary", target.server, "generation", gen)
		return res, rec, fmt.Errorf("%w: volume %q promoted on %s, but its record was not updated: %v", errUnavailable, rec.ID, target.server, err)
	}
	c.metrics.promotions.WithLabelValues(reason).Inc()
	if serr := c.moveSnapshotRecords(ctx, m, rec.ID, rec.Server); serr != nil {
		// The snapshots are served by the new primary; IDs whose record
		// still names the old one are routed there until a retry.
		klog.ErrorS(serr, "Volume promoted, but its snapshots' records were not all moved", "volume", rec.ID, "primary", target.server)
	}
	res.Generation, res.Replicas = gen, next.Replicas
	res.Snapshot, res.SnapshotTime = st.Latest, st.LatestTime
	if res.Snapshot == "" {
		res.Snapshot, res.SnapshotTime = target.st.Latest, target.st.LatestTime
	}
	klog.InfoS("Volume promoted", "volume", res.Volume, "from", res.From, "to", res.To, "generation", gen,
		"handedOver", handedOver, "snapshot", res.Snapshot, "reason", reason)
	if herr := c.volumeMoved(ctx, res.Volume, res.From, res.To); herr != nil {
		res.HookError = herr.Error()
	}
	return res, next, nil
}

// volumeMoved tells the hook, if any; its failure is logged and reported,
// and the move stands.
func (c *ControllerServer) volumeMoved(ctx context.Context, volumeID, from, to string) error {
	if c.opts.VolumeMoved == nil {
		return nil
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.CallTimeout)
	defer cancel()
	err := c.opts.VolumeMoved.VolumeMoved(hctx, volumeID, from, to)
	if err != nil {
		klog.ErrorS(err, "Telling what uses a moved volume failed", "volume", volumeID, "from", from, "to", to)
	}
	return err
}

// AutoPromote promotes, every tick, each replicated volume whose primary's
// server has been unhealthy (failing its probes, or out of reach: no
// longer discovered) for at least after. The caller runs it in one
// controller only (the leader). Nothing is listed while every server
// answers.
func (c *ControllerServer) AutoPromote(ctx context.Context, after time.Duration) {
	tick := min(max(after/4, 100*time.Millisecond), 5*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	st := &autoState{unknown: map[string]time.Time{}}
	for {
		c.autoPromoteOnce(ctx, after, time.Now(), st)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// downFor lists the servers unhealthy for at least after, at now.
func downFor(members []*registry.Member, after time.Duration, now time.Time) map[string]bool {
	down := map[string]bool{}
	for _, m := range members {
		if st := m.Status(); !st.Healthy && !st.DownSince.IsZero() && now.Sub(st.DownSince) >= after {
			down[m.Name] = true
		}
	}
	return down
}

// goneFor is whether a primary's server, which the registry does not
// hold (discovery dropped it for --forget-server-after), has been out of
// reach for at least after: from the time the registry gives (it was
// seen failing, or forgotten), else from when this loop first found it
// unknown (recorded in unknown: the registry forgot before this
// controller started). Such a server is gone from discovery and cannot
// be reached: as unhealthy as one failing its probes, and its volumes
// are otherwise unavailable until someone promotes them by hand.
func goneFor(server string, gone, unknown map[string]time.Time, after time.Duration, now time.Time) bool {
	since, ok := gone[server]
	if !ok {
		if since, ok = unknown[server]; !ok {
			unknown[server] = now
			return false
		}
	}
	return now.Sub(since) >= after
}

// autoState is what AutoPromote's passes carry between them.
type autoState struct {
	// unknown: since when each primary's server the registry does not
	// hold (and does not list as gone) was first found so.
	unknown map[string]time.Time
	// listed: the placements were listed once (the first pass lists
	// them whatever the servers' health, to find primaries on servers
	// the registry forgot before this controller started).
	listed bool
}

// autoPromoteOnce is one pass of AutoPromote.
func (c *ControllerServer) autoPromoteOnce(ctx context.Context, after time.Duration, now time.Time, state *autoState) {
	down := downFor(c.servers.List(), after, now)
	gone := c.servers.Gone()
	unknown := state.unknown
	if state.listed && len(down) == 0 && len(gone) == 0 && len(unknown) == 0 {
		return
	}
	recs, err := c.placements.List(ctx)
	if err != nil {
		klog.ErrorS(err, "Listing placements for automatic promotion")
		return
	}
	state.listed = true
	stillUnknown := map[string]bool{}
	for _, rec := range recs {
		if rec.Kind != placements.Volume || !rec.Replicated() || ctx.Err() != nil {
			continue
		}
		reason := "unhealthy"
		if _, known := c.servers.Get(rec.Server); !known {
			stillUnknown[rec.Server] = true
			if !goneFor(rec.Server, gone, unknown, after, now) {
				continue
			}
			reason = "no longer discovered"
		} else if !down[rec.Server] {
			continue
		}
		res, err := c.Promote(ctx, rec.ClusterID(), "", ReasonUnhealthy)
		if err != nil {
			klog.ErrorS(err, "Automatic promotion failed; retried next pass", "volume", rec.ClusterID(), "primary", rec.Server, "why", reason, "downFor", after)
			continue
		}
		klog.InfoS("Promoted automatically: the primary's server was out of reach", "volume", res.Volume, "from", res.From, "to", res.To,
			"why", reason, "generation", res.Generation, "snapshot", res.Snapshot, "after", after)
	}
	for s := range unknown {
		if !stillUnknown[s] {
			delete(unknown, s)
		}
	}
}
