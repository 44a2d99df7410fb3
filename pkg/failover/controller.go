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

// recheck is how soon a server is looked at again when the API server says
// its node is back but the cache does not show it yet.
const recheck = time.Second

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

	// Set by tests: observe sees each decision on a pod once it is acted
	// on, detached each detach once it is done.
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
	// Every node of the cluster, but only what the rule reads of each.
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(c.cs, 0, informers.WithTransform(slimNode))
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
		// Nodes change often (kubelets report status); only a change of
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

// slimNode keeps of a Node what Decide reads (its Ready condition and
// taints): a large cluster's nodes, with their image lists, would
// otherwise weigh on the controller's memory.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a tombstone
	}
	slim := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion},
		Spec: corev1.NodeSpec{Taints: n.Spec.Taints}}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			slim.Status.Conditions = append(slim.Status.Conditions, c)
		}
	}
	return slim, nil
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
		var d Decision
		d, err = c.syncPod(ctx, it.pod)
		if c.observe != nil {
			defer c.observe(it.pod, d) // once it is requeued
		}
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
func (c *Controller) syncPod(ctx context.Context, key string) (Decision, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return Decision{Why: err.Error()}, nil
	}
	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.forget(key)
		return Decision{Why: "gone"}, nil
	}
	if err != nil {
		return Decision{Why: err.Error()}, err
	}
	if c.failed[pod.UID] || !c.opts.Selector.Matches(labels.Set(pod.Labels)) {
		return Decision{Node: pod.Spec.NodeName, Why: "failed over already, or not a server"}, nil
	}
	var node *corev1.Node
	if pod.Spec.NodeName != "" {
		if node, err = c.nodes.Get(pod.Spec.NodeName); apierrors.IsNotFound(err) {
			node = nil
		} else if err != nil {
			return Decision{Why: err.Error()}, err
		}
	}
	d := Decide(pod, node, c.opts.Clock.Now(), c.opts.After)
	switch d.Verdict {
	case Keep:
		c.cancel(ctx, key, pod, d)
		return d, nil
	case Wait:
		c.wait(ctx, key, pod, d)
		c.queue.AddAfter(item{pod: key}, d.In)
		return d, nil
	}
	return d, c.failover(ctx, key, pod, d)
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
