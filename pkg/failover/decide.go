package failover

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// NodeDown says whether a node counts as dead, and since when: its Ready
// condition is not True (Unknown when the node-lifecycle controller stopped
// hearing from the kubelet, False when the kubelet says so). Since is the
// condition's last transition, or the node.kubernetes.io/unreachable
// taint's time when that is earlier, as Kubernetes' own taint-based
// eviction counts. A node whose Ready condition is True is never down,
// whatever its taints: the unreachable taint lags up to a
// node-monitor-period behind a node that came back, and acting then would
// move a live server. A node without a Ready condition has never reported
// and holds nothing yet.
func NodeDown(n *corev1.Node) (since time.Time, down bool) {
	var ready *corev1.NodeCondition
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			ready = &n.Status.Conditions[i]
		}
	}
	if ready == nil || ready.Status == corev1.ConditionTrue {
		return time.Time{}, false
	}
	since = ready.LastTransitionTime.Time
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeUnreachable && t.TimeAdded != nil && (since.IsZero() || t.TimeAdded.Time.Before(since)) {
			since = t.TimeAdded.Time
		}
	}
	return since, true
}

// Verdict is what to do about one server pod.
type Verdict int

const (
	// Keep: its node is ready (or it has none): nothing to do.
	Keep Verdict = iota
	// Wait: its node is down, not yet for long enough.
	Wait
	// Fail: its node has been down for longer than the failover delay.
	Fail
)

func (v Verdict) String() string {
	return [...]string{"keep", "wait", "fail"}[v]
}

// Decision is the verdict on a pod, with what it rests on.
type Decision struct {
	Verdict Verdict
	Node    string
	// Since is when the node went down (Wait and Fail).
	Since time.Time
	// In is the time left until the pod fails over (Wait).
	In time.Duration
	// Why is for logs.
	Why string
}

// Decide is the failover rule for one storage-server pod on the node it is
// bound to (nil when that Node does not exist), at now: fail it over once
// the node has been down for after. A pod not bound to a node, or bound to
// a Node that is gone (the pod garbage collector force-deletes those pods
// itself), is kept.
func Decide(pod *corev1.Pod, node *corev1.Node, now time.Time, after time.Duration) Decision {
	d := Decision{Node: pod.Spec.NodeName}
	switch {
	case d.Node == "":
		d.Why = "not scheduled"
		return d
	case node == nil:
		d.Why = "its node object is gone"
		return d
	case node.Name != d.Node:
		d.Why = fmt.Sprintf("node %s is not the pod's node %s", node.Name, d.Node)
		return d
	}
	since, down := NodeDown(node)
	if !down {
		d.Why = "node ready"
		return d
	}
	if since.IsZero() {
		// Kubelets and the node-lifecycle controller always stamp it; a
		// node that nobody timed is not one to act on.
		d.Why = "node not ready since an unknown time"
		return d
	}
	d.Since = since
	if left := since.Add(after).Sub(now); left > 0 {
		d.Verdict, d.In = Wait, left
		d.Why = fmt.Sprintf("node not ready for %s, failover in %s", now.Sub(since).Round(time.Second), left.Round(time.Second))
		return d
	}
	d.Verdict = Fail
	d.Why = fmt.Sprintf("node not ready for %s (failover after %s)", now.Sub(since).Round(time.Second), after)
	return d
}
