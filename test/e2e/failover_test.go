package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// The failover test's cluster: what it sets and why.
const (
	// The node-lifecycle controller marks a node whose kubelet fell silent
	// Unknown after this (Kubernetes' default: 50 s), checking every
	// nodeMonitorPeriod (default 5 s). Short, so the test is.
	nodeMonitorGrace  = 8 * time.Second
	nodeMonitorPeriod = time.Second
	// How often the attach-detach controller checks that what it believes
	// attached still is (default 1 min): it notices a VolumeAttachment the
	// dots controller deleted at its next check. DOTS_E2E_AD_SYNC overrides
	// it, to measure the default.
	defaultADSync = 5 * time.Second
	// The pool disk's CSI driver and class (the cloud's, in a real cluster).
	diskDriver = "disk.e2e.dots.csi.dev"
	diskClass  = "e2e-disk"
	diskID     = "disk-0"
	nodeA      = "e2e-a"
	nodeB      = "e2e-b"
	serverPod  = "dots-server-0"
	poolClaim  = "pool-dots-server-0"
)

// failoverValues install the chart with one server whose pool lives on
// the disk class; everything else, failover included, is the chart's
// default (no snapshot CRDs here: helm renders no snapshot parts).
const failoverValues = `
server:
  replicas: 1
  nfs:
    clients: ["127.0.0.0/8"]
  storage:
    storageClassName: ` + diskClass + `
    size: 10Gi
`

// TestFailoverControl kills the node of a storage server on a real control
// plane and measures the control plane's failover: the node-lifecycle
// controller marks the node Unknown, the dots controller (the chart's
// flags, RBAC and ServiceAccount) force-deletes the server pod after
// --server-failover-after and deletes its pool disk's VolumeAttachment on
// the dead node, the real csi-attacher detaches the disk there, the
// StatefulSet controller makes the pod anew, kube-scheduler binds it to
// the other node, the attach-detach controller and the csi-attacher attach
// the disk there, and that node's kubelet starts the pod. Nodes are
// simulated kubelets (see simKubelet); the server pods run nothing (the
// data path moving with them is test/failover's).
func TestFailoverControl(t *testing.T) {
	dotsBin, err := filepath.Abs(envOr("DOTS_BIN", "../../bin/dots"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dotsBin); err != nil {
		t.Fatalf("dots binary %s: %v (run `make build`)", dotsBin, err)
	}
	adSync := defaultADSync
	if v := os.Getenv("DOTS_E2E_AD_SYNC"); v != "" {
		if adSync, err = time.ParseDuration(v); err != nil {
			t.Fatalf("DOTS_E2E_AD_SYNC: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &steps{t: t}
	defer s.summary()

	var c *cluster
	var k *kube
	var disk *fakeDisk
	var ctrls []*controllerProc
	var args []string
	kubelets := map[string]*simKubelet{}
	dir := workDir(t)
	s.run(fmt.Sprintf("control plane with node-lifecycle (grace %s, period %s), attach-detach (sync %s), statefulset controllers; kube-scheduler",
		nodeMonitorGrace, nodeMonitorPeriod, adSync), func() {
		root := buildTools(t)
		c = startClusterWith(t, filepath.Join(root, "bin"), dir, append(slices.Clone(storageControllers), "node-lifecycle-controller"),
			"--node-monitor-grace-period="+nodeMonitorGrace.String(), "--node-monitor-period="+nodeMonitorPeriod.String(),
			"--attach-detach-reconcile-sync-period="+adSync.String())
		k = newKube(t, c.config)
		c.startScheduler(t)
		createNamespace(t, ctx, k, namespace)
	})
	if t.Failed() {
		return
	}
	s.run("the pool disk: CSIDriver (attach required), class, PV; its CSI controller behind the real csi-attacher", func() {
		disk = startDisk(t, ctx, c, k)
	})
	if t.Failed() {
		return
	}
	s.run("node "+nodeA+" (simulated kubelet); helm install: "+serverPod+" unschedulable until "+nodeA+" is labelled a storage node, then bound there, its disk attached, Running", func() {
		kubelets[nodeA] = startKubelet(t, ctx, k.cs, nodeA, "127.0.0.2", map[string]string{diskDriver: nodeA})
		newRelease(t, c, namespace, failoverValues).install(t, ctx)
		why := waitUnschedulable(t, ctx, k, namespace, serverPod, "node affinity/selector")
		t.Logf("%s unschedulable: %s", serverPod, why)
		labelStorageNode(t, ctx, k, nodeA)
		args = failoverArgs(t, ctx, k)
		waitServerRunning(t, ctx, k, nodeA, c)
		if on, _ := disk.state(diskID); on != nodeA {
			t.Fatalf("disk attached to %q, want %s", on, nodeA)
		}
	})
	if t.Failed() {
		return
	}
	s.run("node "+nodeB+"; two dots controllers with the chart's failover flags ("+strings.Join(args, " ")+") as its ServiceAccount, one leading", func() {
		kubelets[nodeB] = startKubelet(t, ctx, k.cs, nodeB, "127.0.0.3", map[string]string{diskDriver: nodeB})
		labelStorageNode(t, ctx, k, nodeB)
		ctrls = startFailoverControllers(t, ctx, dotsBin, c, k, args, 2)
	})
	if t.Failed() {
		return
	}
	after := flagDuration(t, args, "server-failover-after")
	s.run("node "+nodeA+" dies: the server moves to "+nodeB, func() {
		old, err := k.cs.CoreV1().Pods(namespace).Get(ctx, serverPod, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tl := watchFailover(t, ctx, k, old.UID)
		kubelets[nodeA].die()
		t0 := kubelets[nodeA].lastHeartbeat()
		budget := nodeMonitorGrace + nodeMonitorPeriod + after + adSync + time.Minute
		if err := tl.wait(budget, "detect", "pod_deleted", "rescheduled", "va_moved", "running"); err != nil {
			_, calls := disk.state(diskID)
			t.Fatalf("%v\n--- dots controller ---\n%s\n--- kube-controller-manager (attach, node) ---\n%s\n%s\ndisk calls: %v\nevents:\n%s",
				err, leader(t, ctrls).tail(20), c.kcm.matching(15, "ttach"), c.kcm.matching(5, "e2e-a"), calls, k.events(ctx, namespace, poolClaim))
		}
		since := func(m string) float64 { return tl.get(m).Sub(t0).Seconds() }
		fmt.Printf("failover-control: ok detect_s=%.1f pod_deleted_s=%.1f rescheduled_s=%.1f va_moved_s=%.1f running_s=%.1f node_monitor_grace_s=%.0f failover_after_s=%.0f ad_sync_s=%.0f\n",
			since("detect"), since("pod_deleted"), since("rescheduled"), since("va_moved"), since("running"),
			nodeMonitorGrace.Seconds(), after.Seconds(), adSync.Seconds())

		// Never before the delay: the pod goes --server-failover-after
		// after the node went NotReady (the condition's time has whole
		// seconds).
		if waited := tl.get("pod_deleted").Sub(tl.get("detect")); waited < after-time.Second {
			t.Errorf("pod deleted %s after the node went NotReady, before --server-failover-after %s", waited, after)
		}
		// The target: detection and replacement within the delay plus 20 s
		// (at the attach-detach controller's test sync period; its default
		// adds up to a minute).
		if total, bound := tl.get("va_moved").Sub(t0), after+15*time.Second+adSync; total > bound {
			t.Errorf("disk attached on %s %s after the last heartbeat, want under %s", nodeB, total, bound)
		}
		lead := leader(t, ctrls)
		checkFailover(t, ctx, k, disk, lead.metrics, old.UID)
		if lead.matching(1, "Failed storage server over") == "" {
			t.Errorf("the leading controller did not log the failover")
		}
		for _, other := range ctrls {
			if other != lead && other.matching(1, "Watching storage servers") != "" {
				t.Errorf("%s watched for failover without leading", other.name)
			}
		}
	})
}

// startDisk makes the pool disk's CSIDriver, class and PV, and runs its
// CSI controller behind the real csi-attacher.
func startDisk(t *testing.T, ctx context.Context, c *cluster, k *kube) *fakeDisk {
	t.Helper()
	yes, no := true, false
	if _, err := k.cs.StorageV1().CSIDrivers().Create(ctx, &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: diskDriver},
		Spec: storagev1.CSIDriverSpec{AttachRequired: &yes, PodInfoOnMount: &no}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	immediate := storagev1.VolumeBindingImmediate
	if _, err := k.cs.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: diskClass},
		Provisioner: diskDriver, VolumeBindingMode: &immediate}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	block := corev1.PersistentVolumeBlock
	if _, err := k.cs.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-pool-" + diskID},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			VolumeMode:                    &block,
			StorageClassName:              diskClass,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			ClaimRef:                      &corev1.ObjectReference{Namespace: namespace, Name: poolClaim},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: diskDriver, VolumeHandle: diskID}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	disk, sock := startFakeDisk(t, c.dir, diskDriver)
	startProc(t, c.dir, "csi-attacher-disk", filepath.Join(c.bin, "csi-attacher"),
		"--kubeconfig="+c.kubeconfig, "--csi-address="+sock, "--leader-election=false", "--timeout=10s",
		"--retry-interval-start=500ms", "--retry-interval-max=2s", "--v=4")
	return disk
}

// failoverArgs are the --server-failover-* flags the installed release
// gives the controller.
func failoverArgs(t *testing.T, ctx context.Context, k *kube) []string {
	t.Helper()
	d, err := k.cs.AppsV1().Deployments(namespace).Get(ctx, controllerSA, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the release's controller: %v", err)
	}
	c := containerOf(d, "dots")
	if c == nil {
		t.Fatal("the release's controller has no dots container")
	}
	var out []string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--server-failover-") {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		t.Fatal("the chart's controller has no --server-failover-* flags: failover is not on by default")
	}
	return out
}

func flagDuration(t *testing.T, args []string, name string) time.Duration {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatalf("no --%s in %v", name, args)
	return 0
}

// waitServerRunning waits for the server pod to run on node, its disk
// attached there.
func waitServerRunning(t *testing.T, ctx context.Context, k *kube, node string, c *cluster) {
	t.Helper()
	if err := eventually(2*time.Minute, func() error {
		p, err := k.cs.CoreV1().Pods(namespace).Get(ctx, serverPod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Spec.NodeName != node || p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pod on %q, %s", p.Spec.NodeName, p.Status.Phase)
		}
		return nil
	}); err != nil {
		t.Fatalf("%s not running on %s: %v\nevents:\n%s%s\n--- kube-controller-manager ---\n%s", serverPod, node, err,
			k.events(ctx, namespace, serverPod), k.events(ctx, namespace, poolClaim), c.kcm.problems(10))
	}
}

// controllerProc is a `dots controller` and its metrics URL.
type controllerProc struct {
	*proc
	metrics string
}

// startFailoverControllers runs n replicas of `dots controller` as the
// chart's controller ServiceAccount with the chart's failover flags, and
// waits until one holds the failover Lease. The server they are given does
// not run: failover needs none.
func startFailoverControllers(t *testing.T, ctx context.Context, dotsBin string, c *cluster, k *kube, failover []string, n int) []*controllerProc {
	t.Helper()
	saConfig := saKubeconfig(t, ctx, c, k, namespace, controllerSA)
	server := fmt.Sprintf("--server=name=%s,api=127.0.0.1:%d,nfs=127.0.0.1", serverPod, freePort(t))
	var out []*controllerProc
	for i := range n {
		httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		args := append([]string{"controller", "--endpoint=unix://" + filepath.Join(c.dir, fmt.Sprintf("controller-%d.sock", i)),
			"--http-address=" + httpAddr, "--placements=kubernetes:" + namespace, "--v=4", server}, dotsTLSFlags(t, c.dir, "controller")...)
		p := startProcEnv(t, c.dir, fmt.Sprintf("dots-controller-%d", i), []string{"KUBECONFIG=" + saConfig}, dotsBin, append(args, failover...)...)
		out = append(out, &controllerProc{proc: p, metrics: "http://" + httpAddr + "/metrics"})
	}
	lease := "dots-controller-failover"
	waitFor(t, "a dots controller holds the failover Lease", time.Minute, out[0].proc, func() error {
		l, err := k.cs.CoordinationV1().Leases(namespace).Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return fmt.Errorf("Lease %s not held", lease)
		}
		return nil
	})
	return out
}

// leader is the one controller that leads failover: exactly one may.
func leader(t *testing.T, ctrls []*controllerProc) *controllerProc {
	t.Helper()
	var leaders []*controllerProc
	for _, c := range ctrls {
		if c.matching(1, "Leading server failover") != "" {
			leaders = append(leaders, c)
		}
	}
	if len(leaders) != 1 {
		t.Fatalf("%d of %d controllers lead failover, want 1", len(leaders), len(ctrls))
	}
	return leaders[0]
}

// timeline records when each step of a failover was first seen, from
// watches (no polling: the times are the events').
type timeline struct {
	mu      sync.Mutex
	at      map[string]time.Time
	changed chan struct{}
}

func (tl *timeline) mark(name string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if _, ok := tl.at[name]; !ok {
		tl.at[name] = time.Now()
		select {
		case tl.changed <- struct{}{}:
		default:
		}
	}
}

func (tl *timeline) get(name string) time.Time {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.at[name]
}

// wait returns once every step named was seen, or an error naming those
// that were not after timeout.
func (tl *timeline) wait(timeout time.Duration, names ...string) error {
	deadline := time.After(timeout)
	for {
		tl.mu.Lock()
		var missing []string
		for _, n := range names {
			if _, ok := tl.at[n]; !ok {
				missing = append(missing, n)
			}
		}
		seen := fmt.Sprint(tl.at)
		tl.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-tl.changed:
		case <-deadline:
			return fmt.Errorf("after %s, not seen: %v (seen: %s)", timeout, missing, seen)
		}
	}
}

// watchFailover watches nodes, the server's pods and VolumeAttachments and
// marks: detect (node A not Ready), pod_deleted (the old pod gone),
// rescheduled (a new pod bound to node B), va_moved (the disk's
// VolumeAttachment on B attached), running (the new pod Running).
func watchFailover(t *testing.T, ctx context.Context, k *kube, old types.UID) *timeline {
	t.Helper()
	tl := &timeline{at: map[string]time.Time{}, changed: make(chan struct{}, 1)}
	f := informers.NewSharedInformerFactory(k.cs, 0)
	nf := informers.NewSharedInformerFactoryWithOptions(k.cs, 0, informers.WithNamespace(namespace))
	wctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	onNode := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok && n.Name == nodeA {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
					tl.mark("detect")
				}
			}
		}
	}
	onPod := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Name != serverPod || p.UID == old {
			return
		}
		if p.Spec.NodeName == nodeB {
			tl.mark("rescheduled")
		}
		if p.Spec.NodeName == nodeB && p.Status.Phase == corev1.PodRunning {
			tl.mark("running")
		}
	}
	onPodGone := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if p, ok := obj.(*corev1.Pod); ok && p.UID == old {
			tl.mark("pod_deleted")
		}
	}
	onVA := func(obj any) {
		if va, ok := obj.(*storagev1.VolumeAttachment); ok && va.Spec.NodeName == nodeB && va.Status.Attached &&
			va.Spec.Source.PersistentVolumeName != nil && *va.Spec.Source.PersistentVolumeName == "e2e-pool-"+diskID {
			tl.mark("va_moved")
		}
	}
	_, _ = f.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onNode, UpdateFunc: func(_, o any) { onNode(o) }})
	_, _ = f.Storage().V1().VolumeAttachments().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onVA, UpdateFunc: func(_, o any) { onVA(o) }})
	_, _ = nf.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onPod,
		UpdateFunc: func(_, o any) { onPod(o) }, DeleteFunc: onPodGone})
	f.Start(wctx.Done())
	nf.Start(wctx.Done())
	for typ, ok := range f.WaitForCacheSync(wctx.Done()) {
		if !ok {
			t.Fatalf("watch %v: not synced", typ)
		}
	}
	for typ, ok := range nf.WaitForCacheSync(wctx.Done()) {
		if !ok {
			t.Fatalf("watch %v: not synced", typ)
		}
	}
	return tl
}

// checkFailover checks what the failover left: the disk detached from the
// dead node before it was attached to the other, the old attachment gone,
// events on the claim and the StatefulSet, the controller's metric, and
// the new pod left alone.
func checkFailover(t *testing.T, ctx context.Context, k *kube, disk *fakeDisk, metricsURL string, old types.UID) {
	t.Helper()
	on, calls := disk.state(diskID)
	if on != nodeB {
		t.Errorf("disk attached to %q, want %s; calls %v", on, nodeB, calls)
	}
	detachA := slices.IndexFunc(calls, func(c diskCall) bool { return c.op == "detach" && c.node == nodeA })
	attachB := slices.IndexFunc(calls, func(c diskCall) bool { return c.op == "attach" && c.node == nodeB && c.err == nil })
	if detachA < 0 || attachB < detachA {
		t.Errorf("want the disk detached from %s, then attached to %s: %v", nodeA, nodeB, calls)
	}
	vas, err := k.cs.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, va := range vas.Items {
		if va.Spec.NodeName == nodeA {
			t.Errorf("VolumeAttachment %s on the dead node is still there", va.Name)
		}
	}
	evs, err := k.cs.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PersistentVolumeClaim/" + poolClaim + " ServerNodeNotReady", "PersistentVolumeClaim/" + poolClaim + " ServerFailover",
		"PersistentVolumeClaim/" + poolClaim + " ServerVolumeDetached", "StatefulSet/dots-server ServerNodeNotReady", "StatefulSet/dots-server ServerFailover"} {
		if !slices.ContainsFunc(evs.Items, func(e corev1.Event) bool {
			return e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name+" "+e.Reason == want && e.Source.Component == "dots-controller"
		}) {
			t.Errorf("no event %s from dots-controller", want)
		}
	}
	if err := metricIs(metricsURL, `dots_server_failovers_total{server="`+serverPod+`"}`, 1); err != nil {
		t.Error(err)
	}
	p, err := k.cs.CoreV1().Pods(namespace).Get(ctx, serverPod, metav1.GetOptions{})
	if err != nil || p.UID == old || p.DeletionTimestamp != nil || p.Spec.NodeName != nodeB {
		t.Errorf("the new server pod: %v", err)
	}
}

// metricIs checks one sample of a Prometheus text endpoint.
func metricIs(url, sample string, want float64) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			if got, err := strconv.ParseFloat(v, 64); err != nil || got != want {
				return fmt.Errorf("%s = %s, want %v", sample, v, want)
			}
			return nil
		}
	}
	return fmt.Errorf("%s: no sample %s", url, sample)
}
