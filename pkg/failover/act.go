package failover

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// failover re-reads the node and the pod from the API server (the caches
// may lag behind a node that just came back), force-deletes the pod, and
// queues the detach of its volumes from the dead node.
func (c *Controller) failover(ctx context.Context, key string, pod *corev1.Pod, d Decision) error {
	node, err := c.cs.CoreV1().Nodes().Get(ctx, d.Node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node = nil
	} else if err != nil {
		return err
	}
	now := c.opts.Clock.Now()
	switch fresh := Decide(pod, node, now, c.opts.After); fresh.Verdict {
	case Keep:
		// The informer will bring the news; until it does, look again now
		// and then.
		klog.InfoS("Failover called off: the API server says the node is back", "pod", klog.KObj(pod), "why", fresh.Why)
		c.queue.AddAfter(item{pod: key}, recheck)
		return nil
	case Wait:
		klog.InfoS("Failover put off: the API server says the node went down later", "pod", klog.KObj(pod), "why", fresh.Why)
		c.queue.AddAfter(item{pod: key}, fresh.In)
		return nil
	}
	cur, err := c.cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.UID != pod.UID || cur.Spec.NodeName != d.Node {
		return nil // replaced meanwhile: the new pod is decided on by its own events
	}
	// Its claims now: once it is deleted, nothing says which they were.
	claims, err := c.claims(ctx, cur)
	if err != nil {
		return err
	}

	zero := int64(0)
	err = c.cs.CoreV1().Pods(cur.Namespace).Delete(ctx, cur.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &cur.UID}})
	deleted := err == nil
	switch {
	case deleted:
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		// Gone already (deleted by hand, or by a previous leader): its
		// volumes still hang on the dead node.
		klog.InfoS("Server pod already gone; detaching its volumes from the dead node", "pod", klog.KObj(cur), "node", d.Node)
	default:
		return fmt.Errorf("force-delete pod %s/%s: %w", cur.Namespace, cur.Name, err)
	}
	c.failed[cur.UID] = true
	c.forget(key)

	var pvs []string
	for _, pvc := range claims {
		if pvc.Spec.VolumeName == "" {
			continue
		}
		pvs = append(pvs, pvc.Spec.VolumeName)
		c.queue.Add(item{node: d.Node, pv: pvc.Spec.VolumeName, claim: corev1.ObjectReference{
			Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID}})
	}
	if !deleted {
		return nil
	}
	down := now.Sub(d.Since)
	c.opts.Metrics.Failovers.WithLabelValues(cur.Name).Inc()
	c.opts.Metrics.Seconds.Observe(down.Seconds())
	klog.InfoS("Failed storage server over: force-deleted its pod on a dead node", "pod", klog.KObj(cur), "node", d.Node,
		"notReadyFor", down.Round(time.Millisecond), "after", c.opts.After, "detaching", pvs)
	c.eventOn(claims, ownerStatefulSet(cur), corev1.EventTypeWarning, "ServerFailover",
		"node %s not ready for %s (--server-failover-after %s): force-deleted storage server pod %s and detaching %v from that node, so that the StatefulSet's new pod can attach them on another node",
		d.Node, down.Round(time.Second), c.opts.After, cur.Name, pvs)
	return nil
}

// claims returns the pod's PersistentVolumeClaims that exist.
func (c *Controller) claims(ctx context.Context, pod *corev1.Pod) ([]*corev1.PersistentVolumeClaim, error) {
	var out []*corev1.PersistentVolumeClaim
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, err := c.cs.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("claim %s of pod %s: %w", v.PersistentVolumeClaim.ClaimName, pod.Name, err)
		}
		out = append(out, pvc)
	}
	return out, nil
}

// detach deletes the VolumeAttachments of a PV on a dead node. The disk's
// CSI attacher then unpublishes it there (a cloud detaches a disk from a
// dead instance: that is the fence), and the attach-detach controller,
// finding the attachment gone at its next sync, lets the new pod attach it.
func (c *Controller) detach(ctx context.Context, it item) error {
	node, err := c.cs.CoreV1().Nodes().Get(ctx, it.node, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	default:
		if _, down := NodeDown(node); !down {
			// Its kubelet unmounts, and the attach-detach controller detaches
			// as usual: no reason to pull the disk from under it.
			klog.InfoS("Node is back: leaving the detach to the attach-detach controller", "node", it.node, "pv", it.pv)
			return nil
		}
	}
	opts := metav1.ListOptions{Limit: 500}
	for {
		vas, err := c.cs.StorageV1().VolumeAttachments().List(ctx, opts)
		if err != nil {
			return err
		}
		for _, va := range vas.Items {
			src := va.Spec.Source.PersistentVolumeName
			if va.Spec.NodeName != it.node || src == nil || *src != it.pv || va.DeletionTimestamp != nil {
				continue
			}
			err := c.cs.StorageV1().VolumeAttachments().Delete(ctx, va.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &va.UID}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return fmt.Errorf("delete VolumeAttachment %s: %w", va.Name, err)
			}
			klog.InfoS("Deleted the VolumeAttachment of a failed-over server's volume on its dead node", "volumeAttachment", va.Name,
				"pv", it.pv, "node", it.node, "attacher", va.Spec.Attacher)
			c.opts.Recorder.Eventf(&it.claim, corev1.EventTypeNormal, "ServerVolumeDetached",
				"deleted VolumeAttachment %s of %s on not-ready node %s: its attacher detaches it there", va.Name, it.pv, it.node)
		}
		if opts.Continue = vas.Continue; opts.Continue == "" {
			return nil
		}
	}
}

// event records an event on the pod's claims and its StatefulSet, where
// people look (the pod itself is about to go).
func (c *Controller) event(ctx context.Context, pod *corev1.Pod, typ, reason, format string, args ...any) {
	claims, err := c.claims(ctx, pod)
	if err != nil {
		klog.ErrorS(err, "Event not recorded on a server's claims", "pod", klog.KObj(pod), "reason", reason)
	}
	c.eventOn(claims, ownerStatefulSet(pod), typ, reason, format, args...)
}

func (c *Controller) eventOn(claims []*corev1.PersistentVolumeClaim, sts *corev1.ObjectReference, typ, reason, format string, args ...any) {
	for _, pvc := range claims {
		c.opts.Recorder.Eventf(pvc, typ, reason, format, args...)
	}
	if sts != nil {
		c.opts.Recorder.Eventf(sts, typ, reason, format, args...)
	}
}

// ownerStatefulSet is a reference to the StatefulSet that owns the pod,
// built from its owner reference (no read of the StatefulSet needed).
func ownerStatefulSet(pod *corev1.Pod) *corev1.ObjectReference {
	for _, o := range pod.OwnerReferences {
		if o.Kind == "StatefulSet" && o.Controller != nil && *o.Controller {
			return &corev1.ObjectReference{Kind: o.Kind, APIVersion: o.APIVersion, Namespace: pod.Namespace, Name: o.Name, UID: o.UID}
		}
	}
	return nil
}
