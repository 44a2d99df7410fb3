// Package workloads is the controller's Kubernetes side of replicas: the
// pods that must follow a volume whose primary moved (VolumeMoved), and the
// storage servers' pool claims left behind by a scale-down (Orphans). It
// knows Kubernetes objects through client-go only, like pkg/failover, and
// never calls a storage server.
package workloads

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// Event reasons this package records.
const (
	// ReasonVolumeMoved is on a claim whose volume's primary moved.
	ReasonVolumeMoved = "VolumeMoved"
	// ReasonOrphanedPool is on a server's pool claim without its pod.
	ReasonOrphanedPool = "OrphanedPool"
)

// Mover is told of every volume whose primary moved to another server
// (api.VolumeMoved). Pods using it still hold an NFS mount of the old
// server, which no longer exports it: they must be restarted to mount from
// the new primary. With Restart it deletes them (their controllers
// recreate them); else an Event on the claim says they must be.
type Mover struct {
	cs       kubernetes.Interface
	driver   string
	restart  bool
	recorder record.EventRecorder
	metrics  *Metrics
}

// NewMover returns the hook for volumes of CSI driver driver.
func NewMover(cs kubernetes.Interface, driver string, restart bool, recorder record.EventRecorder, metrics *Metrics) *Mover {
	return &Mover{cs: cs, driver: driver, restart: restart, recorder: recorder, metrics: metrics}
}

// VolumeMoved finds the PV of volumeID (by its CSI volumeHandle), its
// claim, and the pods of the claim's namespace that use the claim, and
// restarts them or records an Event on the claim. A volume without a PV or
// a bound claim (created outside Kubernetes) needs nothing.
func (m *Mover) VolumeMoved(ctx context.Context, volumeID, from, to string) error {
	pv, err := m.findPV(ctx, volumeID)
	if err != nil || pv == nil {
		return err
	}
	ref := pv.Spec.ClaimRef
	if ref == nil || ref.Name == "" {
		klog.V(2).InfoS("Moved volume has no claim", "volume", volumeID, "pv", pv.Name)
		return nil
	}
	pods, err := m.cs.CoreV1().Pods(ref.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("pods of claim %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	var using []corev1.Pod
	for _, p := range pods.Items {
		if usesClaim(&p, ref.Name) && p.DeletionTimestamp == nil {
			using = append(using, p)
		}
	}
	claim := claimRef(ref)
	if len(using) == 0 {
		// Nothing mounts it now: the next pod mounts the new primary.
		klog.InfoS("Volume moved; no pod uses its claim", "volume", volumeID, "from", from, "to", to, "claim", ref.Namespace+"/"+ref.Name)
		return nil
	}
	names := make([]string, len(using))
	for i, p := range using {
		names[i] = p.Name
	}
	if !m.restart {
		m.event(claim, corev1.EventTypeWarning, ReasonVolumeMoved, "volume %s moved from server %s to %s: restart pods %s so they mount it from %s (or set the controller's --restart-pods-on-promotion)",
			volumeID, from, to, strings.Join(names, ", "), to)
		return nil
	}
	var failed []string
	for _, p := range using {
		// The UID precondition never deletes a pod of the same name
		// created since the listing (already on the new primary).
		err := m.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(p.UID))})
		switch {
		case err == nil:
			m.metrics.PodsRestarted.Inc()
			klog.InfoS("Restarted pod of a moved volume", "pod", klog.KObj(&p), "volume", volumeID, "from", from, "to", to)
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			// Gone or replaced meanwhile: it mounts the new primary.
		default:
			failed = append(failed, p.Name+": "+err.Error())
		}
	}
	if len(failed) > 0 {
		m.event(claim, corev1.EventTypeWarning, ReasonVolumeMoved, "volume %s moved from server %s to %s; restarting pods failed (restart them by hand): %s",
			volumeID, from, to, strings.Join(failed, "; "))
		return fmt.Errorf("restarting pods of claim %s/%s: %s", ref.Namespace, ref.Name, strings.Join(failed, "; "))
	}
	m.event(claim, corev1.EventTypeNormal, ReasonVolumeMoved, "volume %s moved from server %s to %s: restarted pods %s",
		volumeID, from, to, strings.Join(names, ", "))
	return nil
}

// findPV returns the PV of the volume, nil when there is none. PVs cannot
// be selected by their volume handle, so they are listed.
func (m *Mover) findPV(ctx context.Context, volumeID string) (*corev1.PersistentVolume, error) {
	pvs, err := m.cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("persistent volumes: %w", err)
	}
	i := slices.IndexFunc(pvs.Items, func(pv corev1.PersistentVolume) bool {
		c := pv.Spec.CSI
		return c != nil && c.Driver == m.driver && c.VolumeHandle == volumeID
	})
	if i < 0 {
		klog.V(2).InfoS("Moved volume has no PV", "volume", volumeID)
		return nil, nil
	}
	return &pvs.Items[i], nil
}

func usesClaim(p *corev1.Pod, claim string) bool {
	return slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool {
		return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim
	})
}

// claimRef is the claim as an event's object, from the PV's reference (no
// read of the claim needed).
func claimRef(ref *corev1.ObjectReference) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: ref.Namespace, Name: ref.Name, UID: ref.UID}
}

func (m *Mover) event(obj *corev1.ObjectReference, typ, reason, format string, args ...any) {
	m.recorder.Eventf(obj, typ, reason, format, args...)
	m.metrics.Events.WithLabelValues(reason).Inc()
}
