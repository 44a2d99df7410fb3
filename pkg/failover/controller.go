// Package failover moves a storage server off a dead node. A StatefulSet
// pod on a node that stops answering stays Terminating until its kubelet
// confirms, which a dead kubelet never does, and the pool's RWO disk stays
// attached to the dead node: every volume of that server hangs. Kubernetes'
// answer is the node.kubernetes.io/out-of-service taint (non-graceful node
// shutdown), which an operator puts on a node by hand and which evicts
// everything on it. This package does the same for dots' own server pods
// only, on its own: once a server pod's node has not been Ready for
// --server-failover-after, it force-deletes the pod (so the StatefulSet
// makes it anew on another node) and deletes the VolumeAttachments of the
// pod's volumes on the dead node (so the disk's attacher detaches it there,
// and the attach-detach controller lets the new pod attach it).
//
// It watches the server pods and the nodes (informers, a delaying queue:
// no polling), re-reads the node and the pod from the API server before it
// acts, deletes with the pod's UID as a precondition, acts once per pod,
// and runs only in the controller replica that holds its Lease.
package failover

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// Options configure a Controller.
type Options struct {
	Namespace string
	Selector  labels.Selector
	After     time.Duration
	Recorder  record.EventRecorder
	Metrics   *Metrics
	// Clock is the real one unless a test steps its own.
	Clock clock.WithTicker
}

// Controller fails over the server pods of one namespace. It is used for
// one leadership term: Run once.
type Controller struct {
	cs    kubernetes.Interface
	opts  Options
	queue workqueue.TypedRateLimitingInterface[item]
	pods  corelisters.PodLister
	nodes corelisters.NodeLister

	// Only the one worker touches these.
	pending map[string]pending // by pod key: servers waiting on a down node
	failed  map[types.UID]bool // pods failed over: never twice

	// observe, when set (tests), sees each decision on a pod once it is
	// acted on, and detached each detach once it is done.
	observe  func(key string, d Decision)
	detached func(it item, err error)
}

// item is a unit of work: a server pod to decide on (pod), or a PV whose
// VolumeAttachment on a dead node must go (node, pv, and its claim for
// events).
type item struct {
	pod   string
	node  string
	pv    string
	claim corev1.ObjectReference
}

// pending is a server whose node is down, as last announced.
type pending struct {
	uid   types.UID
	node  string
	since time.Time
}

// New makes a controller; Run starts it.
func New(cs kubernetes.Interface, opts Options) *Controller {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Controller{
		cs:   cs,
		opts: opts,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[item](),
			workqueue.TypedRateLimitingQueueConfig[item]{Name: "server-failover", Clock: opts.Clock}),
		pending: map[string]pending{},
		failed:  map[types.UID]bool{},
	}
}

// Run watches the server pods and the nodes and fails servers over until
// ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	podFactory := informers.NewSharedInformerFactoryWithOptions(c.cs, 0, informers.WithNamespace(c.opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = c.opts.Selector.String() }))
	nodeFactory := informers.NewSharedInformerFactory(c.cs, 0)
	podInf, nodeInf := podFactory.Core().V1().Pods(), nodeFactory.Core().V1().Nodes()
	c.pods, c.nodes = podInf.Lister(), nodeInf.Lister()

	enqueuePod := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(item{pod: key})
		}
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueuePod, UpdateFunc: func(_, obj any) { enqueuePod(obj) }, DeleteFunc: enqueuePod,
	}); err != nil {
		return err
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.enqueuePodsOn(nodeName(obj)) },
		// Nodes change often (status, leases do not count); only a change of
		// readiness matters here.
		UpdateFunc: func(old, obj any) {
			os, od := NodeDown(old.(*corev1.Node))
			ns, nd := NodeDown(obj.(*corev1.Node))
			if od != nd || !os.Equal(ns) {
				c.enqueuePodsOn(nodeName(obj))
			}
		},
		DeleteFunc: func(obj any) { c.enqueuePodsOn(nodeName(obj)) },
	}); err != nil {
		return err
	}
	podFactory.Start(ctx.Done())
	nodeFactory.Start(ctx.Done())
	defer podFactory.Shutdown()
	defer nodeFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), podInf.Informer().HasSynced, nodeInf.Informer().HasSynced) {
		return ctx.Err()
	}
	klog.InfoS("Watching storage servers for failover", "namespace", c.opts.Namespace, "selector", c.opts.Selector.String(), "after", c.opts.After)
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	for c.next(ctx) {
	}
	return nil
}

func nodeName(obj any) string {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if n, ok := obj.(*corev1.Node); ok {
		return n.Name
	}
	return ""
}

// enqueuePodsOn queues the server pods bound to a node (a handful: the
// lister holds only the selected pods).
func (c *Controller) enqueuePodsOn(node string) {
	pods, err := c.pods.List(labels.Everything())
	if err != nil || node == "" {
		return
	}
	for _, p := range pods {
		if p.Spec.NodeName == node {
			c.queue.Add(item{pod: p.Namespace + "/" + p.Name})
		}
	}
}

func (c *Controller) next(ctx context.Context) bool {
	it, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(it)
	var err error
	if it.pod != "" {
		err = c.syncPod(ctx, it.pod)
	} else {
		err = c.detach(ctx, it)
		if c.detached != nil {
			defer c.detached(it, err)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			klog.ErrorS(err, "Server failover step failed; retrying", "pod", it.pod, "node", it.node, "pv", it.pv)
			c.queue.AddRateLimited(it)
		}
		return true
	}
	c.queue.Forget(it)
	return true
}

// syncPod decides on one server pod from the caches and acts on it.
func (c *Controller) syncPod(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	if c.failed[pod.UID] || !c.opts.Selector.Matches(labels.Set(pod.Labels)) {
		if c.observe != nil {
			c.observe(key, Decision{Node: pod.Spec.NodeName, Why: "failed over already, or not a server"})
		}
		return nil
	}
	var node *corev1.Node
	if pod.Spec.NodeName != "" {
		if node, err = c.nodes.Get(pod.Spec.NodeName); apierrors.IsNotFound(err) {
			node = nil
		} else if err != nil {
			return err
		}
	}
	d := Decide(pod, node, c.opts.Clock.Now(), c.opts.After)
	if c.observe != nil {
		defer c.observe(key, d) // once it is acted on
	}
	switch d.Verdict {
	case Keep:
		c.cancel(ctx, key, pod, d)
		return nil
	case Wait:
		c.wait(ctx, key, pod, d)
		c.queue.AddAfter(item{pod: key}, d.In)
		return nil
	}
	return c.failover(ctx, key, pod, d)
}

// forget drops what was known of a pod that is gone.
func (c *Controller) forget(key string) {
	if _, ok := c.pending[key]; ok {
		delete(c.pending, key)
		_, name, _ := cache.SplitMetaNamespaceKey(key)
		c.opts.Metrics.Pending.DeleteLabelValues(name)
	}
}

// wait announces, once per outage, that a server's node is down.
func (c *Controller) wait(ctx context.Context, key string, pod *corev1.Pod, d Decision) {
	p := pending{uid: pod.UID, node: d.Node, since: d.Since}
	if c.pending[key] == p {
		return
	}
	c.pending[key] = p
	c.opts.Metrics.Pending.WithLabelValues(pod.Name).Set(1)
	at := d.Since.Add(c.opts.After)
	klog.InfoS("Storage server's node is not ready: failing it over unless the node comes back", "pod", klog.KObj(pod),
		"node", d.Node, "notReadySince", d.Since, "failoverAt", at)
	c.event(ctx, pod, corev1.EventTypeWarning, "ServerNodeNotReady",
		"node %s of storage server %s is not ready since %s: failing the server over at %s (--server-failover-after %s) unless the node is back",
		d.Node, pod.Name, d.Since.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339), c.opts.After)
}

// cancel calls a pending failover off: the node came back.
func (c *Controller) cancel(ctx context.Context, key string, pod *corev1.Pod, d Decision) {
	p, ok := c.pending[key]
	if !ok {
		return
	}
	c.forget(key)
	if p.uid != pod.UID {
		return
	}
	klog.InfoS("Storage server's node is back: no failover", "pod", klog.KObj(pod), "node", p.node, "why", d.Why)
	c.event(ctx, pod, corev1.EventTypeNormal, "ServerNodeReady",
		"node %s of storage server %s is ready again after %s: no failover", p.node, pod.Name,
		c.opts.Clock.Since(p.since).Round(time.Second))
}

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
	if fresh := Decide(pod, node, now, c.opts.After); fresh.Verdict != Fail {
		// The informer will bring the news; look again then.
		klog.InfoS("Failover called off: the API server says otherwise than the cache", "pod", klog.KObj(pod), "why", fresh.Why)
		c.queue.AddRateLimited(item{pod: key})
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
	claims := c.claims(ctx, cur)

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
func (c *Controller) claims(ctx context.Context, pod *corev1.Pod) []*corev1.PersistentVolumeClaim {
	var out []*corev1.PersistentVolumeClaim
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, err := c.cs.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if err != nil {
			klog.ErrorS(err, "Cannot read a server pod's claim", "pod", klog.KObj(pod), "claim", v.PersistentVolumeClaim.ClaimName)
			continue
		}
		out = append(out, pvc)
	}
	return out
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
	c.eventOn(c.claims(ctx, pod), ownerStatefulSet(pod), typ, reason, format, args...)
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
