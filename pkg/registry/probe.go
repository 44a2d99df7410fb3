package registry

import (
	"context"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
)

// ProbeNow reads one server's health and free space at once (after it
// refused a create for lack of space, say), instead of at the next round.
func (r *Registry) ProbeNow(ctx context.Context, m *Member) { r.probe(ctx, m) }

// probe reads a server's summary: its manifest (pool state and space, and
// the counts of its volumes and snapshots, which the server keeps) and
// Probe. Its cost does not grow with the volumes a server holds: nothing
// is listed. A server whose manifest has no space (an older one, or one
// that cannot read its pool now) is asked GetCapacity as well; one whose
// manifest has no counts keeps the counts known before.
func (r *Registry) probe(ctx context.Context, m *Member) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, r.opts.ProbeTimeout)
	defer cancel()
	// The pool's state and space come with the server's identity; a server
	// that gives none is probed all the same.
	pool, hasSpace, manifest := m.poolInfo(ctx)
	// The probe waits for a connection (within ProbeTimeout) instead of
	// failing at once, so a server that just came back is seen as up.
	_, err := m.Identity.Probe(ctx, &csi.ProbeRequest{}, grpc.WaitForReady(true))
	available := pool.Available
	if err == nil && !hasSpace {
		var c *csi.GetCapacityResponse
		if c, err = m.Controller.GetCapacity(ctx, &csi.GetCapacityRequest{}); err == nil {
			available = c.GetAvailableCapacity()
		}
	}
	m.mu.Lock()
	was := m.err == nil && !m.checked.IsZero()
	m.err, m.checked = err, time.Now()
	switch {
	case err == nil:
		m.downSince = time.Time{}
	case m.downSince.IsZero():
		// From the probe's start: a probe of a server that went away
		// waits out its timeout before it fails.
		m.downSince = start
	}
	if manifest != nil {
		m.volumesPath = manifest[api.ManifestVolumesPath]
		m.replicas, _ = strconv.Atoi(manifest[api.ManifestReplicas])
		m.zone = manifest[api.ManifestZone]
	}
	if err == nil {
		m.available, m.accounted = available, 0
		if pool.HasCounts {
			m.counts = counts{volumes: pool.Volumes, snapshots: pool.Snapshots, provisioned: pool.Provisioned}
			m.countsKnown = true
		}
	}
	if pool.Pool != "" {
		m.pool = pool // its state, even when the probe failed because of it
	}
	m.mu.Unlock()
	if was != (err == nil) {
		if err != nil {
			klog.ErrorS(err, "Storage server is down", "server", m.Name)
		} else {
			klog.InfoS("Storage server is up", "server", m.Name, "available", available)
		}
	}
	r.metrics.observe(m.Name, m.Status())
}

// poolInfo reads the pool figures of the server's manifest (see
// api.PoolInfo); hasSpace is false when it has none (or the server does
// not answer); manifest is nil when it did not answer.
func (m *Member) poolInfo(ctx context.Context) (p api.PoolInfo, hasSpace bool, manifest map[string]string) {
	r, err := m.Identity.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		klog.V(2).InfoS("No pool figures from the server", "server", m.Name, "err", err)
		return api.PoolInfo{}, false, nil
	}
	manifest = r.GetManifest()
	if manifest == nil {
		manifest = map[string]string{}
	}
	p, ok := api.ParsePoolInfo(manifest)
	if !ok {
		return api.PoolInfo{Pool: p.Pool, Health: p.Health}, false, manifest
	}
	return p, true, manifest
}
