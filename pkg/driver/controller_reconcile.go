package driver

import (
	"context"
	"errors"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// ReconcilePlacements completes the placement records from what each
// healthy server holds, at start and every interval until ctx ends: a
// volume or snapshot made before placements were recorded (or through a
// server's own API) gets its record, so no create elsewhere can take its
// name. A name found on two servers is logged loudly and counted: it is
// never created that way by this controller, but an operator must look.
func (c *ControllerServer) ReconcilePlacements(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.ImportPlacements(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ImportPlacements makes one pass of ReconcilePlacements.
func (c *ControllerServer) ImportPlacements(ctx context.Context) {
	for _, m := range c.servers.List() {
		if m.Status().Healthy {
			c.importPlacements(ctx, m)
		}
	}
}

// importPlacements records every volume and snapshot of one server, a page
// at a time, each page within ReadTimeout.
func (c *ControllerServer) importPlacements(ctx context.Context, m *registry.Member) {
	added := 0
	put := func(kind placements.Kind, id string) {
		err := c.placements.Put(ctx, placements.Record{Kind: kind, ID: id, Server: m.Name})
		switch {
		case err == nil:
			added++
		case errors.Is(err, placements.ErrConflict):
			c.metrics.conflicts.Inc()
			klog.ErrorS(err, "A name is on two storage servers: look at both before deleting either", string(kind), id, "server", m.Name)
		default:
			klog.ErrorS(err, "Recording a placement", string(kind), id, "server", m.Name)
		}
	}
	for token := ""; ; {
		sctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
		r, err := m.Controller.ListVolumes(sctx, &csi.ListVolumesRequest{StartingToken: token, MaxEntries: 500})
		cancel()
		if err != nil {
			klog.V(2).InfoS("Importing placements: server did not list its volumes", "server", m.Name, "err", err)
			return
		}
		for _, e := range r.GetEntries() {
			put(placements.Volume, e.GetVolume().GetVolumeId())
		}
		if token = r.GetNextToken(); token == "" {
			break
		}
	}
	for token := ""; ; {
		sctx, cancel := context.WithTimeout(ctx, c.opts.ReadTimeout)
		r, err := m.Controller.ListSnapshots(sctx, &csi.ListSnapshotsRequest{StartingToken: token, MaxEntries: 500})
		cancel()
		if err != nil {
			klog.V(2).InfoS("Importing placements: server did not list its snapshots", "server", m.Name, "err", err)
			return
		}
		for _, e := range r.GetEntries() {
			put(placements.Snapshot, e.GetSnapshot().GetSnapshotId())
		}
		if token = r.GetNextToken(); token == "" {
			break
		}
	}
	klog.V(2).InfoS("Placements imported", "server", m.Name, "records", added)
}
