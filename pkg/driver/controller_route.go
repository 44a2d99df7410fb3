package driver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// relay sends a copy of req, rewritten by rewrite (the server's own IDs
// in place of the cluster's), to a server's call within timeout.
func relay[Req proto.Message, Resp any](ctx context.Context, timeout time.Duration, req Req, rewrite func(Req),
	call func(context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	fwd := proto.Clone(req).(Req)
	rewrite(fwd)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return call(cctx, fwd)
}

// member finds the server holding a cluster ID: for a volume, the
// primary its placement record names (a volume ID keeps the server it was
// created on, which is only a hint once the volume moved), for a snapshot
// the server its record names (it moves with its volume); otherwise, or
// without a record, the server the ID names. A malformed ID, or one of
// a server declared gone, is NotFound (no such volume exists); one of a
// server the controller does not know now is Unavailable: it may come
// back, and what it holds must not be reported missing meanwhile.
func (c *ControllerServer) member(ctx context.Context, kind, clusterID string) (*registry.Member, string, error) {
	m, id, _, err := c.routed(ctx, kind, clusterID)
	return m, id, err
}

// routed is member, with the volume's or snapshot's record (zero when it
// has none, or kind is neither).
func (c *ControllerServer) routed(ctx context.Context, kind, clusterID string) (*registry.Member, string, placements.Record, error) {
	var rec placements.Record
	srv, id, err := api.ParseID(clusterID)
	if err != nil {
		return nil, "", rec, fmt.Errorf("%s %q: %w", kind, clusterID, err)
	}
	if kind == string(placements.Volume) || kind == string(placements.Snapshot) {
		r, ok, err := c.placements.Lookup(ctx, placements.Kind(kind), id)
		if err != nil {
			return nil, "", rec, fmt.Errorf("%w: reading where %s %q is: %v", errUnavailable, kind, clusterID, err)
		}
		if ok {
			rec = r
		}
		if ok && rec.Server != srv {
			srv = rec.Server
			if _, known := c.servers.Get(srv); !known {
				return nil, "", rec, fmt.Errorf("%w: %s %q is on storage server %q (it moved with its volume), which this controller does not know now", errUnavailable, kind, clusterID, srv)
			}
		}
	}
	if m, ok := c.servers.Get(srv); ok {
		return m, id, rec, nil
	}
	gone, err := c.placements.Forgotten(ctx, srv)
	switch {
	case err != nil:
		return nil, "", rec, fmt.Errorf("%w: %s %q: reading whether server %q was declared gone: %v", errUnavailable, kind, clusterID, srv, err)
	case gone:
		return nil, "", rec, fmt.Errorf("%s %q: %w: its server %q was declared gone", kind, clusterID, errNotFound, srv)
	}
	return nil, "", rec, fmt.Errorf("%w: %s %q is on storage server %q, which this controller does not know now; "+
		"if that server is gone for good, declare it with `dots server forget %s`", errUnavailable, kind, clusterID, srv, srv)
}

// memberForDelete is member for deletes: what cannot exist, or was on a
// server declared gone, is deleted already (nil member, nil error).
func (c *ControllerServer) memberForDelete(ctx context.Context, kind placements.Kind, clusterID string) (*registry.Member, string, error) {
	m, id, _, err := c.routedForDelete(ctx, kind, clusterID)
	return m, id, err
}

// routedForDelete is memberForDelete with the volume's record.
func (c *ControllerServer) routedForDelete(ctx context.Context, kind placements.Kind, clusterID string) (*registry.Member, string, placements.Record, error) {
	m, id, rec, err := c.routed(ctx, string(kind), clusterID)
	switch {
	case errors.Is(err, api.ErrMalformedID):
		klog.V(2).InfoS("Deleting what no server can hold: nothing to do", string(kind), clusterID)
		return nil, "", rec, nil
	case errors.Is(err, errNotFound):
		srv, id, _ := api.ParseID(clusterID)
		klog.InfoS("Deleting from a server declared gone: its data went with it", string(kind), clusterID, "server", srv)
		if derr := c.placements.Delete(ctx, placements.Record{Kind: kind, ID: id, Server: srv}); derr != nil {
			c.logPlacementLeft(kind, id, srv, derr)
		}
		return nil, "", rec, nil
	}
	return m, id, rec, err
}

// placed returns the server a record places an ID on: found is false when
// there is no record. A record of a server declared gone is dropped (the
// name is free again); one of a server not known now is Unavailable: the
// first attempt may have created it there.
func (c *ControllerServer) placed(ctx context.Context, kind placements.Kind, id string) (*registry.Member, bool, error) {
	srv, ok, err := c.placements.Get(ctx, kind, id)
	if err != nil {
		return nil, false, fmt.Errorf("%w: reading where %s %q was placed: %v", errUnavailable, kind, id, err)
	}
	if !ok {
		return nil, false, nil
	}
	if m, known := c.servers.Get(srv); known {
		if st := m.Status(); !st.Healthy {
			// Not elsewhere, and not into a hung server either: the
			// retry comes back once it answers.
			return nil, false, fmt.Errorf("%w: %s %q was sent to storage server %q, which is not answering (%s); "+
				"it is created there or nowhere", errUnavailable, kind, id, srv, st.Error)
		}
		return m, true, nil
	}
	gone, err := c.placements.Forgotten(ctx, srv)
	if err == nil && gone {
		klog.InfoS("A placement on a server declared gone: placing again", string(kind), id, "server", srv)
		if err := c.placements.Delete(ctx, placements.Record{Kind: kind, ID: id, Server: srv}); err != nil {
			return nil, false, c.placementErr(err)
		}
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("%w: %s %q was sent to storage server %q, which this controller does not know now; "+
		"it is created there or nowhere (if that server is gone for good: `dots server forget %s`)", errUnavailable, kind, id, srv, srv)
}

// placementErr maps a failure of the placements store: a conflict means the
// name is taken on another server.
func (c *ControllerServer) placementErr(err error) error {
	if errors.Is(err, placements.ErrConflict) {
		c.metrics.conflicts.Inc()
		return fmt.Errorf("%w: %v", errExists, err)
	}
	return fmt.Errorf("%w: recording the placement: %v", errUnavailable, err)
}

// createFailed drops the record of a create that failed for good, once
// the server confirms it holds nothing of that name (so the name may go
// elsewhere next time), and keeps it when the outcome is unknown: the
// create may have happened, and its retries must go to the same server.
func (c *ControllerServer) createFailed(ctx context.Context, rec placements.Record, m *registry.Member, err error) {
	if status.Code(err) == codes.ResourceExhausted {
		// Its free space was less than the cache said: read it again
		// before the next placement.
		c.servers.ProbeNow(ctx, m)
	}
	if !definitive(err) {
		klog.InfoS("Create failed with an unknown outcome: its retries go to the same server", string(rec.Kind), rec.ID, "server", rec.Server, "err", err)
		return
	}
	ctx = context.WithoutCancel(ctx)
	if held := c.holds(ctx, m, rec); held != codes.NotFound {
		klog.InfoS("Create refused, but the server may hold the name: its placement stays", string(rec.Kind), rec.ID, "server", rec.Server, "err", err, "check", held)
		return
	}
	klog.InfoS("Create refused for good: its placement is dropped", string(rec.Kind), rec.ID, "server", rec.Server, "err", err)
	if derr := c.placements.Delete(ctx, rec); derr != nil {
		c.logPlacementLeft(rec.Kind, rec.ID, rec.Server, derr)
	}
}

// holds asks a server whether it holds a volume or snapshot: NotFound is
// the only answer that proves it does not.
func (c *ControllerServer) holds(ctx context.Context, m *registry.Member, rec placements.Record) codes.Code {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
	defer cancel()
	var err error
	if rec.Kind == placements.Snapshot {
		_, err = m.Controller.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: rec.ID})
	} else {
		_, err = m.Controller.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: rec.ID})
	}
	return status.Code(err)
}

// definitive reports a server's answer that says the create did not and
// will not happen as asked: the server leaves nothing behind then.
// AlreadyExists is not: the name is taken on that server.
func definitive(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.OutOfRange, codes.ResourceExhausted, codes.NotFound, codes.FailedPrecondition:
		return true
	}
	return false
}

func (c *ControllerServer) logPlacementLeft(kind placements.Kind, id, server string, err error) {
	klog.ErrorS(err, "A placement record stays behind; it only pins an unused name to its server", string(kind), id, "server", server)
}

type controllerMetrics struct {
	skipped    *prometheus.CounterVec
	conflicts  prometheus.Counter
	promotions *prometheus.CounterVec
}

func newControllerMetrics(reg prometheus.Registerer) *controllerMetrics {
	m := &controllerMetrics{
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dots_controller_servers_skipped_total",
			Help: "Storage servers left out of a call that asks every server (a listing), because they did not answer in time, by call and server.",
		}, []string{"call", "server"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dots_controller_placement_conflicts_total",
			Help: "Creates refused because their name is placed on another server.",
		}),
		promotions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dots_volume_promotions_total",
			Help: "Replicas promoted to primary, by reason (manual, unhealthy, drain, rebalance).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.skipped, m.conflicts, m.promotions)
	}
	return m
}
