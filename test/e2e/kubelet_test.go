package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// heartbeat is how often a simulated kubelet renews its node's Lease: a
// quarter of the node-monitor-grace-period the failover test gives the
// node-lifecycle controller, as a kubelet renews at a quarter of its lease.
const heartbeat = 2 * time.Second

// simKubelet plays a node's kubelet through the API, as far as the control
// plane can tell: it registers the Node (Ready, with capacity for the
// scheduler, its attaches handed to the attach-detach controller) and its
// CSINode, renews its Lease in kube-node-lease, and for the pods bound to it
// reports their volumes in use (node.status.volumesInUse, which keeps the
// attach-detach controller from detaching a mounted volume), waits until the
// node's volumesAttached lists them, then reports the pod Running and Ready;
// a pod being deleted it stops and deletes for good. die stops all of it
// at once, as a node losing power would: the Node keeps its last status.
type simKubelet struct {
	name, address string
	cs            kubernetes.Interface
	stop          context.CancelFunc
	done          sync.WaitGroup

	mu       sync.Mutex
	lastBeat time.Time
	inUse    []corev1.UniqueVolumeName
}

// startKubelet registers the node and runs its kubelet until die or the
// end of ctx. drivers maps CSI driver names to the node's ID for each.
func startKubelet(t *testing.T, ctx context.Context, cs kubernetes.Interface, name, address string, drivers map[string]string) *simKubelet {
	t.Helper()
	k := &simKubelet{name: name, address: address, cs: cs}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
		Annotations: map[string]string{controllerManagedAttach: "true"},
	}}
	node, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods: resource.MustParse("110")}
	status := corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity,
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: address}, {Type: corev1.NodeHostName, Address: name}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "the e2e test plays the kubelet", LastHeartbeatTime: now, LastTransitionTime: now}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.34.4", OperatingSystem: "linux", Architecture: "amd64"},
	}
	// A patch: the node-lifecycle controller may have written the Node
	// since it was made.
	patch, _ := json.Marshal(map[string]any{"status": status})
	if node, err = cs.CoreV1().Nodes().PatchStatus(ctx, name, patch); err != nil {
		t.Fatal(err)
	}
	owner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: node.UID}}
	csiNode := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: owner}}
	for d, id := range drivers {
		csiNode.Spec.Drivers = append(csiNode.Spec.Drivers, storagev1.CSINodeDriver{Name: d, NodeID: id})
	}
	if _, err := cs.StorageV1().CSINodes().Create(ctx, csiNode, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease, OwnerReferences: owner}}
	if lease, err = cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, k.renewed(lease), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	kctx, stop := context.WithCancel(ctx)
	k.stop = stop
	t.Cleanup(k.die)
	k.done.Add(2)
	go k.beat(kctx, lease)
	go k.syncPods(t, kctx)
	// The apiserver taints a new node not-ready; the node-lifecycle
	// controller lifts the taint once it sees the node Ready.
	waitFor(t, "node "+name+" schedulable", time.Minute, nil, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil && len(n.Spec.Taints) > 0 {
			err = fmt.Errorf("taints %v", n.Spec.Taints)
		}
		return err
	})
	return k
}

func (k *simKubelet) renewed(l *coordinationv1.Lease) *coordinationv1.Lease {
	now := metav1.NewMicroTime(time.Now())
	secs := int32(40)
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &k.name, &secs, &now
	k.mu.Lock()
	k.lastBeat = now.Time
	k.mu.Unlock()
	return l
}

// beat renews the node's Lease every heartbeat, as the kubelet does.
func (k *simKubelet) beat(ctx context.Context, lease *coordinationv1.Lease) {
	defer k.done.Done()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	leases := k.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		l, err := leases.Update(ctx, k.renewed(lease.DeepCopy()), metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			l, err = leases.Get(ctx, k.name, metav1.GetOptions{})
		}
		if err == nil {
			lease = l
		}
	}
}

// die stops the node's kubelet for good and returns when it has stopped.
func (k *simKubelet) die() {
	k.stop()
	k.done.Wait()
}

// lastHeartbeat is the renew time of the last Lease renewal sent.
func (k *simKubelet) lastHeartbeat() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastBeat
}

// syncPods acts on the pods bound to the node, on every change of them or
// of the Node (whose volumesAttached the attach-detach controller updates).
func (k *simKubelet) syncPods(t *testing.T, ctx context.Context) {
	defer k.done.Done()
	pods := informers.NewSharedInformerFactoryWithOptions(k.cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.name).String()
	}))
	nodes := informers.NewSharedInformerFactoryWithOptions(k.cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.name).String()
	}))
	podInf, nodeInf := pods.Core().V1().Pods(), nodes.Core().V1().Nodes()
	// One item: every change syncs all of the node's pods (a handful).
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	const all = "all"
	enqueue := func(any) { queue.Add(all) }
	for _, inf := range []cache.SharedIndexInformer{podInf.Informer(), nodeInf.Informer()} {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue,
			UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue})
	}
	pods.Start(ctx.Done())
	nodes.Start(ctx.Done())
	defer pods.Shutdown()
	defer nodes.Shutdown()
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), podInf.Informer().HasSynced, nodeInf.Informer().HasSynced) {
		return
	}
	for {
		key, quit := queue.Get()
		if quit {
			return
		}
		if err := k.sync(ctx, podInf.Lister(), nodeInf.Lister()); err != nil && ctx.Err() == nil {
			// A conflict, or a claim not bound yet: again, with backoff.
			t.Logf("kubelet %s: %v (retrying)", k.name, err)
			queue.AddRateLimited(key)
		} else {
			queue.Forget(key)
		}
		queue.Done(key)
	}
}

// sync reports the volumes in use of the node's running pods, then starts
// the pods whose volumes are attached and finishes the deletion of those
// being deleted.
func (k *simKubelet) sync(ctx context.Context, podLister corelisters.PodLister, nodeLister corelisters.NodeLister) error {
	pods, err := podLister.List(labels.Everything())
	if err != nil {
		return err
	}
	node, err := nodeLister.Get(k.name)
	if err != nil {
		return err
	}
	var inUse []corev1.UniqueVolumeName
	vols := map[types.UID][]corev1.UniqueVolumeName{}
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue // its containers stop, its volumes are unmounted
		}
		if vols[p.UID], err = k.attachable(ctx, p); err != nil {
			return err
		}
		inUse = append(inUse, vols[p.UID]...)
	}
	slices.Sort(inUse)
	inUse = slices.Compact(inUse)
	if !slices.Equal(inUse, node.Status.VolumesInUse) {
		patch, _ := json.Marshal(map[string]any{"status": map[string]any{"volumesInUse": inUse}})
		if _, err := k.cs.CoreV1().Nodes().PatchStatus(ctx, k.name, patch); err != nil {
			return err
		}
	}
	attached := map[corev1.UniqueVolumeName]bool{}
	for _, a := range node.Status.VolumesAttached {
		attached[a.Name] = true
	}
	for _, p := range pods {
		switch {
		case p.DeletionTimestamp != nil:
			zero := int64(0)
			err := k.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero,
				Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return err
			}
		case p.Status.Phase == corev1.PodRunning:
		case !slices.ContainsFunc(vols[p.UID], func(v corev1.UniqueVolumeName) bool { return !attached[v] }):
			if err := k.run(ctx, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// attachable returns the unique names of the pod's volumes that a CSI
// driver attaches ("kubernetes.io/csi/DRIVER^HANDLE", as the kubelet and
// the attach-detach controller name them).
func (k *simKubelet) attachable(ctx context.Context, p *corev1.Pod) ([]corev1.UniqueVolumeName, error) {
	var out []corev1.UniqueVolumeName
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, err := k.cs.CoreV1().PersistentVolumeClaims(p.Namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		if pvc.Spec.VolumeName == "" {
			return nil, fmt.Errorf("claim %s of pod %s not bound yet", pvc.Name, p.Name)
		}
		pv, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		if pv.Spec.CSI != nil {
			out = append(out, corev1.UniqueVolumeName("kubernetes.io/csi/"+pv.Spec.CSI.Driver+"^"+pv.Spec.CSI.VolumeHandle))
		}
	}
	return out, nil
}

// run reports the pod's containers started and ready.
func (k *simKubelet) run(ctx context.Context, p *corev1.Pod) error {
	p = p.DeepCopy()
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.HostIP, p.Status.PodIP = k.address, k.address
	p.Status.HostIPs, p.Status.PodIPs = []corev1.HostIP{{IP: k.address}}, []corev1.PodIP{{IP: k.address}}
	p.Status.StartTime = &now
	p.Status.Conditions = nil
	for _, c := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		started := true
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: "sim://" + string(p.UID) + "/" + c.Name,
			Ready: true, Started: &started, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
	}
	_, err := k.cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}
