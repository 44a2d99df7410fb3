package server

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
)

// Kinds of disagreement the reconciler looks for, the label of
// dots_server_orphans and dots_server_repairs_total.
const (
	orphanUnmounted  = "unmounted_volume"  // a live volume not mounted: not served (repaired: mounted, exported)
	orphanUnexported = "unexported_volume" // a mounted volume without its export (repaired: exported)
	orphanExport     = "stale_export"      // an export of no live volume (repaired: unexported)
	orphanTrash      = "trash"             // deleted volumes not reaped yet (repaired by the pool's maintenance)
	orphanForeign    = "foreign_dataset"   // a dataset under volumes/ dots did not make (reported only)
	orphanInternal   = "internal_snapshot" // an interrupted clone's snapshot (the next start marks it)
	orphanReserve    = "reserve_missing"   // the emergency reserve is not held (taken back when space allows)
)

// Kinds of index corrections (dots_server_index_corrections_total).
var indexKinds = []string{"volume_added", "volume_removed", "volume_changed", "snapshot_added", "snapshot_removed", "snapshot_changed"}

func (r *Reconciler) countReindex(d zfs.IndexDiff) {
	for i, l := range [][]string{d.VolumesAdded, d.VolumesRemoved, d.VolumesChanged, d.SnapshotsAdded, d.SnapshotsRemoved, d.SnapshotsChanged} {
		if len(l) > 0 {
			r.reindex.WithLabelValues(indexKinds[i]).Add(float64(len(l)))
		}
	}
}

var orphanKinds = []string{orphanUnmounted, orphanUnexported, orphanExport, orphanTrash, orphanForeign, orphanInternal, orphanReserve}

// Reconciler compares, at start and then periodically, what the pool holds
// with what the NFS server exports, and repairs what is safe to repair:
// volumes not mounted or not exported are mounted and exported, exports of
// nothing are withdrawn. Everything it finds is logged and counted.
type Reconciler struct {
	srv     *Server
	orphans *prometheus.GaugeVec
	repairs *prometheus.CounterVec
	reindex *prometheus.CounterVec
	last    map[string]int // per kind, to log only changes
}

// NewReconciler registers the reconciler's metrics with reg (if not nil).
func NewReconciler(srv *Server, reg prometheus.Registerer) *Reconciler {
	r := &Reconciler{srv: srv, last: map[string]int{},
		orphans: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dots_server_orphans",
			Help: "What the last reconcile found disagreeing between the pool and the exports, by kind (before repairs).",
		}, []string{"kind"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dots_server_repairs_total",
			Help: "Repairs the reconciler made, by kind.",
		}, []string{"kind"}),
		reindex: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dots_server_index_corrections_total",
			Help: "Entries of the server's index that a reload found differing from the pool (changed behind the server's back), by kind; the pool's state was adopted.",
		}, []string{"kind"}),
	}
	for _, k := range indexKinds {
		r.reindex.WithLabelValues(k)
	}
	if reg != nil {
		reg.MustRegister(r.orphans, r.repairs, r.reindex)
	}
	return r
}

// Run reconciles every interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.Reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Reconcile makes one pass and returns what it found, by kind.
func (r *Reconciler) Reconcile(ctx context.Context) map[string]int {
	found := map[string]int{}
	s := r.srv
	// First make the index true: what follows reads it.
	if d, err := s.pool.Reindex(ctx); err != nil {
		klog.ErrorS(err, "Reconcile: reloading the index")
	} else {
		r.countReindex(d)
	}
	audit, err := s.pool.Audit(ctx)
	if err != nil {
		klog.ErrorS(err, "Reconcile: auditing the pool")
		return found
	}
	found[orphanTrash] = audit.Trash
	found[orphanForeign] = len(audit.Foreign)
	found[orphanInternal] = audit.InternalSnapshots
	if audit.ReserveMissing {
		found[orphanReserve] = 1
	}
	vols, err := s.pool.ListVolumes(ctx)
	if err != nil {
		klog.ErrorS(err, "Reconcile: listing volumes")
		return found
	}
	exported := map[uint32]nfs.Export{}
	for _, e := range s.exporter.Exports() {
		exported[e.ID] = e
	}
	live := map[uint32]bool{}
	for _, v := range vols {
		live[v.ExportID] = true
		if s.held(v.Name) {
			continue // the replication manager serves it once confirmed
		}
		want := s.ExportFor(v)
		switch {
		case !v.Mounted:
			found[orphanUnmounted]++
		case !exported[v.ExportID].Equal(want):
			found[orphanUnexported]++
		default:
			continue
		}
		r.repairVolume(ctx, v)
	}
	for id, e := range exported {
		if !live[id] {
			found[orphanExport]++
			r.withdraw(ctx, e)
		}
	}
	r.report(found, audit)
	return found
}

// repairVolume mounts (if needed) and exports one volume, unless a call is
// working on it right now: that call does its own exporting.
func (r *Reconciler) repairVolume(ctx context.Context, v *zfs.Volume) {
	unlock, err := r.srv.locks.Acquire(volumeKey(v.Name))
	if err != nil {
		return
	}
	defer unlock()
	// Read again under the lock: a delete may have finished meanwhile.
	cur, err := r.srv.pool.GetVolume(ctx, v.Name)
	if err != nil {
		return
	}
	kind := orphanUnexported
	if !cur.Mounted {
		kind = orphanUnmounted
	}
	if err := r.srv.export(ctx, cur); err != nil {
		klog.InfoS("Reconcile: volume still not served", "volume", v.Name, "reason", err.Error())
		return
	}
	r.repairs.WithLabelValues(kind).Inc()
	klog.InfoS("Reconcile: volume served again", "volume", v.Name, "kind", kind)
}

// withdraw unexports an export whose volume is gone, under that volume's
// lock (its name is the last part of the pseudo path).
func (r *Reconciler) withdraw(ctx context.Context, e nfs.Export) {
	name := e.Pseudo[strings.LastIndexByte(e.Pseudo, '/')+1:]
	unlock, err := r.srv.locks.Acquire(volumeKey(name))
	if err != nil {
		return
	}
	defer unlock()
	if _, err := r.srv.pool.GetVolume(ctx, name); err == nil {
		return // it came back (a create): not stale
	}
	if err := r.srv.exporter.Unexport(ctx, e.ID); err != nil {
		klog.ErrorS(err, "Reconcile: withdrawing an export of a missing volume", "exportID", e.ID, "pseudo", e.Pseudo)
		return
	}
	r.repairs.WithLabelValues(orphanExport).Inc()
	klog.InfoS("Reconcile: withdrew an export of a missing volume", "exportID", e.ID, "pseudo", e.Pseudo)
}

func (r *Reconciler) report(found map[string]int, audit zfs.Audit) {
	for _, kind := range orphanKinds {
		n := found[kind]
		r.orphans.WithLabelValues(kind).Set(float64(n))
		if n != r.last[kind] {
			klog.InfoS("Reconcile", "kind", kind, "count", n, "was", r.last[kind])
			r.last[kind] = n
		}
	}
	if len(audit.Foreign) > 0 {
		klog.V(2).InfoS("Reconcile: datasets dots did not make, left alone", "datasets", audit.Foreign)
	}
}
