package workloads

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
)

// DefaultOrphanInterval is how often the server StatefulSet and its claims
// are read: a scale-down is an operator's act, rare and slow to matter.
const DefaultOrphanInterval = time.Minute

// VolumeCounts says how many volumes the controller's records place on each
// server (nil map: it could not say).
type VolumeCounts func(ctx context.Context) (map[string]int, error)

// Orphans finds the storage servers' pool claims left without a pod: a
// StatefulSet keeps the PVCs of its claim templates on scale-down (the
// chart retains them: they hold the pools), and a server whose ordinal is
// at or past spec.replicas no longer runs, so its volumes answer
// Unavailable. It reports them (metric, an Event on each claim, Orphans)
// so that someone scales back up, or drains the server first next time.
type Orphans struct {
	cs        kubernetes.Interface
	namespace string
	selector  labels.Selector
	counts    VolumeCounts
	recorder  record.EventRecorder
	metrics   *Metrics

	mu       sync.Mutex
	current  []api.OrphanedPool
	reported map[string]bool // claims already given an Event, by UID
	// quiet: another controller replica leads and records the Events
	// (every replica scans, so each can answer /servers/orphaned).
	quiet bool
}

// SetLeading says whether this controller records the Events (the one
// holding the Lease, when there are several). A new leader records them
// again for the orphans it finds.
func (o *Orphans) SetLeading(leading bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.quiet = !leading
	if leading {
		o.reported = map[string]bool{}
	}
}

// NewOrphans watches the StatefulSets matching selector (the server pods'
// labels, which the chart also puts on the StatefulSet) in namespace.
// counts may be nil (every orphaned claim then counts as holding volumes).
func NewOrphans(cs kubernetes.Interface, namespace string, selector labels.Selector, counts VolumeCounts, recorder record.EventRecorder, metrics *Metrics) *Orphans {
	return &Orphans{cs: cs, namespace: namespace, selector: selector, counts: counts, recorder: recorder, metrics: metrics, reported: map[string]bool{}}
}

// Orphans returns the orphaned pools of the last scan, for the
// controller's /servers view.
func (o *Orphans) Orphans() []api.OrphanedPool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.current)
}

// Run scans every interval until ctx ends.
func (o *Orphans) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := o.Scan(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Looking for orphaned server pools")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Scan reads the StatefulSets and their claims once, records an Event on
// each claim newly found orphaned and holding volumes, and updates the
// metric and the list.
func (o *Orphans) Scan(ctx context.Context) error {
	sets, err := o.cs.AppsV1().StatefulSets(o.namespace).List(ctx, metav1.ListOptions{LabelSelector: o.selector.String()})
	if err != nil {
		return fmt.Errorf("server statefulsets in %s: %w", o.namespace, err)
	}
	claims, err := o.cs.CoreV1().PersistentVolumeClaims(o.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("claims in %s: %w", o.namespace, err)
	}
	counts := map[string]int(nil)
	if o.counts != nil {
		if counts, err = o.counts(ctx); err != nil {
			klog.ErrorS(err, "Volumes per server unknown: every orphaned pool counts as holding some")
			counts = nil
		}
	}
	var found []api.OrphanedPool
	var pvcs []*corev1.PersistentVolumeClaim
	for _, sts := range sets.Items {
		replicas := 1
		if sts.Spec.Replicas != nil {
			replicas = int(*sts.Spec.Replicas)
		}
		for _, tmpl := range sts.Spec.VolumeClaimTemplates {
			prefix := tmpl.Name + "-" + sts.Name + "-"
			for i := range claims.Items {
				c := &claims.Items[i]
				ordinal, ok := ordinalOf(c.Name, prefix)
				if !ok || ordinal < replicas {
					continue
				}
				server := sts.Name + "-" + strconv.Itoa(ordinal)
				n := -1
				if counts != nil {
					n = counts[server]
				}
				if n == 0 {
					// Drained (or never used): harmless, deletable.
					continue
				}
				found = append(found, api.OrphanedPool{Server: server, Namespace: c.Namespace, Claim: c.Name,
					StatefulSet: sts.Name, Ordinal: ordinal, Replicas: replicas, Volumes: n})
				pvcs = append(pvcs, c)
			}
		}
	}
	slices.SortFunc(found, func(a, b api.OrphanedPool) int { return strings.Compare(a.Claim, b.Claim) })
	o.metrics.Orphaned.Set(float64(len(found)))
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := map[string]bool{}
	for i, c := range pvcs {
		uid := string(c.UID)
		seen[uid] = true
		if o.reported[uid] || o.quiet {
			continue
		}
		o.reported[uid] = true
		p := orphanOf(found, c.Name)
		held := "volumes"
		if p.Volumes > 0 {
			held = strconv.Itoa(p.Volumes) + " volume(s) or replica(s)"
		}
		klog.InfoS("Orphaned server pool", "claim", klog.KObj(c), "server", p.Server, "replicas", p.Replicas, "volumes", p.Volumes)
		o.recorder.Eventf(pvcs[i], corev1.EventTypeWarning, ReasonOrphanedPool,
			"server %s is not running (statefulset %s: replicas=%d) while its pool holds %s, which answer Unavailable: scale the statefulset to %d replicas to bring it back, then `dots server drain %s` before scaling down",
			p.Server, p.StatefulSet, p.Replicas, held, p.Ordinal+1, p.Server)
		o.metrics.Events.WithLabelValues(ReasonOrphanedPool).Inc()
	}
	// A claim no longer orphaned (scaled back up) gets an Event again if
	// it is orphaned again.
	for uid := range o.reported {
		if !seen[uid] {
			delete(o.reported, uid)
		}
	}
	o.current = found
	return nil
}

func orphanOf(ps []api.OrphanedPool, claim string) api.OrphanedPool {
	i := slices.IndexFunc(ps, func(p api.OrphanedPool) bool { return p.Claim == claim })
	return ps[i]
}

// ordinalOf parses TEMPLATE-STATEFULSET-ORDINAL given its prefix.
func ordinalOf(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 0
}
