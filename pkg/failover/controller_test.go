package failover

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/reference"
	clocktesting "k8s.io/utils/clock/testing"
)

const ns = "dots"

var serverLabels = map[string]string{"app.kubernetes.io/component": "server"}

// world is a fake API server holding one storage server, dots-server-0, on
// node a with its pool claim bound to pv-0 and attached there, a pod on a
// that is no server, and node b, ready.
func world(nodeA *corev1.Node) []runtime.Object {
	yes := true
	server := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "dots-server-0", Namespace: ns, UID: "uid-0", Labels: serverLabels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "dots-server", UID: "sts-uid", Controller: &yes}}},
		Spec: corev1.PodSpec{NodeName: "a", Volumes: []corev1.Volume{
			{Name: "pool", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "pool-dots-server-0"}}},
			{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls"}}},
		}},
	}
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns, UID: "uid-app"}, Spec: corev1.PodSpec{NodeName: "a"}}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "pool-dots-server-0", Namespace: ns, UID: "pvc-uid"},
		Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-0"}}
	va := func(name, pv, node string) *storagev1.VolumeAttachment {
		return &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-va-" + name)},
			Spec: storagev1.VolumeAttachmentSpec{Attacher: "disk.example.com", NodeName: node, Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pv}}}
	}
	return []runtime.Object{server, other, pvc, nodeA, node("b", corev1.ConditionTrue, t0),
		va("va-pool-a", "pv-0", "a"), va("va-other-a", "pv-other", "a"), va("va-pool-b", "pv-0", "b")}
}

// harness runs a Controller on a fake API server and a fake clock, and
// lets a test wait for what it does instead of sleeping.
type harness struct {
	t         *testing.T
	cs        *fake.Clientset
	clock     *clocktesting.FakeClock
	metrics   *Metrics
	events    *recorder
	decisions chan Decision
	deletes   chan k8stesting.DeleteAction
	detaches  chan error
}

// start runs the controller at now, with node a as given; setup, if not
// nil, adds reactors to the fake API server first.
func start(t *testing.T, nodeA *corev1.Node, now time.Time, setup func(*fake.Clientset)) *harness {
	t.Helper()
	h := &harness{t: t, cs: fake.NewClientset(world(nodeA)...), clock: clocktesting.NewFakeClock(now),
		metrics: NewMetrics(prometheus.NewRegistry()), events: &recorder{},
		decisions: make(chan Decision, 100), deletes: make(chan k8stesting.DeleteAction, 100), detaches: make(chan error, 100)}
	if setup != nil {
		setup(h.cs)
	}
	// Prepended last, so it sees every delete first, then passes it on.
	h.cs.PrependReactor("delete", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		h.deletes <- a.(k8stesting.DeleteAction)
		return false, nil, nil
	})
	c := New(h.cs, Options{Namespace: ns, Selector: labels.SelectorFromSet(serverLabels), After: 30 * time.Second,
		Recorder: h.events, Metrics: h.metrics, Clock: h.clock})
	c.observe = func(key string, d Decision) {
		if key == ns+"/dots-server-0" {
			h.decisions <- d
		}
	}
	c.detached = func(_ item, err error) { h.detaches <- err }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

// decision waits for the controller's next decision on the server.
func (h *harness) decision(want Verdict) Decision {
	h.t.Helper()
	d, ok := waitFake(h.clock, h.decisions)
	if !ok {
		h.t.Fatalf("no decision (want %v)", want)
	}
	if d.Verdict != want {
		h.t.Fatalf("decision %v (%s), want %v", d.Verdict, d.Why, want)
	}
	return d
}

// retried steps the clock by step until the controller decides again,
// each step waiting up to half a second for it (at most 10 steps). A
// decision's requeue is armed by the work queue's own goroutine, which can
// arm it after a step that came right after the decision, relative to
// the stepped time: the next step then fires it.
func (h *harness) retried(step time.Duration, want Verdict) Decision {
	h.t.Helper()
	for range 10 {
		h.clock.Step(step)
		select {
		case d := <-h.decisions:
			if d.Verdict != want {
				h.t.Fatalf("decision %v (%s), want %v", d.Verdict, d.Why, want)
			}
			return d
		case <-time.After(500 * time.Millisecond):
		}
	}
	h.t.Fatalf("no decision after 10 steps of %v (want %v)", step, want)
	return Decision{}
}

// detach waits for a detach to end.
func (h *harness) detach() {
	h.t.Helper()
	err, ok := waitFake(h.clock, h.detaches)
	if !ok {
		h.t.Fatal("no detach")
	}
	if err != nil {
		h.t.Fatalf("detach: %v", err)
	}
}

// waitFake waits up to 10 s for a value on ch, firing the fake clock's
// due timers now and then: the work queue arms a delayed item's timer in
// a goroutine of its own, and one armed just after a Step, for a time
// that Step reached, fires only at the next Step. Step(0) moves no time.
func waitFake[T any](clock *clocktesting.FakeClock, ch <-chan T) (T, bool) {
	nudge := time.NewTicker(50 * time.Millisecond)
	defer nudge.Stop()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case v := <-ch:
			return v, true
		case <-nudge.C:
			clock.Step(0)
		case <-deadline:
			var zero T
			return zero, false
		}
	}
}

// deleted waits for n deletes and returns what they were of.
func (h *harness) deleted(n int) []k8stesting.DeleteAction {
	h.t.Helper()
	var out []k8stesting.DeleteAction
	for len(out) < n {
		select {
		case a := <-h.deletes:
			out = append(out, a)
		case <-time.After(10 * time.Second):
			h.t.Fatalf("%d deletes, want %d: %v", len(out), n, out)
		}
	}
	return out
}

func (h *harness) noDeletes() {
	h.t.Helper()
	select {
	case a := <-h.deletes:
		h.t.Fatalf("deleted %s %s", a.GetResource().Resource, a.GetName())
	default:
	}
}

func (h *harness) exists(resource, name string) bool {
	h.t.Helper()
	var err error
	switch resource {
	case "pods":
		_, err = h.cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	case "volumeattachments":
		_, err = h.cs.StorageV1().VolumeAttachments().Get(context.Background(), name, metav1.GetOptions{})
	}
	if err != nil && !apierrors.IsNotFound(err) {
		h.t.Fatal(err)
	}
	return err == nil
}

// The server's node went down 10 s ago: nothing happens before 30 s; then
// the pod is force-deleted (grace 0, its UID as precondition) and its
// pool's attachment on that node deleted, nothing else; events say so on
// the claim and the StatefulSet, the metrics count it.
func TestFailsOverAfterTheDelay(t *testing.T) {
	h := start(t, node("a", corev1.ConditionUnknown, t0), t0.Add(10*time.Second), nil)
	if d := h.decision(Wait); d.In != 20*time.Second || !d.Since.Equal(t0) {
		t.Fatalf("wait %s since %s", d.In, d.Since)
	}
	h.noDeletes()
	if got := testutil.ToFloat64(h.metrics.Pending.WithLabelValues("dots-server-0")); got != 1 {
		t.Errorf("pending gauge %v, want 1", got)
	}
	h.events.want(t, "Warning ServerNodeNotReady PersistentVolumeClaim/pool-dots-server-0", "Warning ServerNodeNotReady StatefulSet/dots-server")

	h.clock.Step(19 * time.Second)
	h.noDeletes() // the delaying queue holds it until the deadline

	h.clock.Step(time.Second)
	h.decision(Fail)
	dels := h.deleted(2)
	h.detach()
	pod, va := dels[0], dels[1]
	if pod.GetResource().Resource != "pods" || pod.GetName() != "dots-server-0" {
		t.Fatalf("first delete: %s %s", pod.GetResource().Resource, pod.GetName())
	}
	opts := pod.GetDeleteOptions()
	if opts.GracePeriodSeconds == nil || *opts.GracePeriodSeconds != 0 || opts.Preconditions == nil || *opts.Preconditions.UID != "uid-0" {
		t.Errorf("pod delete options %+v: want grace 0 and the pod's UID as precondition", opts)
	}
	if va.GetResource().Resource != "volumeattachments" || va.GetName() != "va-pool-a" || *va.GetDeleteOptions().Preconditions.UID != "uid-va-va-pool-a" {
		t.Errorf("second delete: %s %s %+v", va.GetResource().Resource, va.GetName(), va.GetDeleteOptions())
	}
	for _, keep := range []string{"va-other-a", "va-pool-b"} {
		if !h.exists("volumeattachments", keep) {
			t.Errorf("VolumeAttachment %s deleted", keep)
		}
	}
	if !h.exists("pods", "app") {
		t.Error("a pod that is not a server was deleted")
	}
	h.events.want(t, "Warning ServerFailover PersistentVolumeClaim/pool-dots-server-0", "Warning ServerFailover StatefulSet/dots-server",
		"Normal ServerVolumeDetached PersistentVolumeClaim/pool-dots-server-0")
	if got := testutil.ToFloat64(h.metrics.Failovers.WithLabelValues("dots-server-0")); got != 1 {
		t.Errorf("failovers %v, want 1", got)
	}
	if got := testutil.CollectAndCount(h.metrics.Pending); got != 0 {
		t.Errorf("pending gauge still has %d series", got)
	}
	if n := testutil.CollectAndCount(h.metrics.Seconds); n != 1 {
		t.Errorf("failover seconds: %d series", n)
	}
	h.noDeletes()
}

// A node that comes back before the delay calls the failover off.
func TestNodeBackCancels(t *testing.T) {
	h := start(t, node("a", corev1.ConditionUnknown, t0), t0.Add(10*time.Second), nil)
	h.decision(Wait)
	h.events.want(t, "Warning ServerNodeNotReady PersistentVolumeClaim/pool-dots-server-0", "Warning ServerNodeNotReady StatefulSet/dots-server")
	back := node("a", corev1.ConditionTrue, t0.Add(15*time.Second), unreachable(t0))
	if _, err := h.cs.CoreV1().Nodes().Update(context.Background(), back, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.decision(Keep)
	h.events.want(t, "Normal ServerNodeReady PersistentVolumeClaim/pool-dots-server-0", "Normal ServerNodeReady StatefulSet/dots-server")
	h.clock.Step(time.Minute) // the deadline that was queued passes
	h.decision(Keep)
	h.noDeletes()
	if got := testutil.ToFloat64(h.metrics.Failovers.WithLabelValues("dots-server-0")); got != 0 {
		t.Errorf("failovers %v", got)
	}
}

// The informer's copy says the node is down, the API server says it is
// back: the API server wins.
func TestStaleCacheDoesNotAct(t *testing.T) {
	var mu sync.Mutex
	gets := 0
	h := start(t, node("a", corev1.ConditionUnknown, t0), t0.Add(time.Minute), func(cs *fake.Clientset) {
		cs.PrependReactor("get", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
			mu.Lock()
			defer mu.Unlock()
			gets++
			return true, node("a", corev1.ConditionTrue, t0.Add(50*time.Second)), nil
		})
	})
	h.decision(Fail)
	h.retried(recheck, Fail) // the retry after the API server disagreed
	h.noDeletes()
	mu.Lock()
	defer mu.Unlock()
	if gets == 0 {
		t.Error("the node was not read from the API server before acting")
	}
}

// A pod that stays after its force-delete (a finalizer holds it) is not
// deleted again, whatever happens to it.
func TestNeverTwice(t *testing.T) {
	h := start(t, node("a", corev1.ConditionUnknown, t0), t0.Add(time.Minute), func(cs *fake.Clientset) {
		cs.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, nil // accepted, and the pod stays
		})
	})
	h.decision(Fail)
	h.deleted(2) // the pod, the attachment
	h.detach()
	pod, err := h.cs.CoreV1().Pods(ns).Get(context.Background(), "dots-server-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Annotations = map[string]string{"touched": "yes"}
	if _, err := h.cs.CoreV1().Pods(ns).Update(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if d := <-h.decisions; d.Verdict != Keep {
		t.Fatalf("second look: %v (%s)", d.Verdict, d.Why)
	}
	h.noDeletes()
	if got := testutil.ToFloat64(h.metrics.Failovers.WithLabelValues("dots-server-0")); got != 1 {
		t.Errorf("failovers %v, want 1", got)
	}
}

// A node that is back by the time the detach runs keeps its attachment:
// its kubelet unmounts and the attach-detach controller detaches.
func TestDetachLeavesAReadyNode(t *testing.T) {
	cs := fake.NewClientset(world(node("a", corev1.ConditionTrue, t0))...)
	c := New(cs, Options{Namespace: ns, Selector: labels.SelectorFromSet(serverLabels), After: time.Second,
		Recorder: &recorder{}, Metrics: NewMetrics(prometheus.NewRegistry())})
	if err := c.detach(context.Background(), item{node: "a", pv: "pv-0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.StorageV1().VolumeAttachments().Get(context.Background(), "va-pool-a", metav1.GetOptions{}); err != nil {
		t.Errorf("attachment on a ready node: %v", err)
	}
}

// recorder keeps "TYPE REASON KIND/NAME" of each event.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) Event(obj runtime.Object, typ, reason, msg string) {
	ref, err := reference.GetReference(scheme.Scheme, obj)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.got = append(r.got, "error: "+err.Error())
		return
	}
	if ref.UID == "" {
		r.got = append(r.got, fmt.Sprintf("error: %s/%s without a UID", ref.Kind, ref.Name))
	}
	r.got = append(r.got, fmt.Sprintf("%s %s %s/%s", typ, reason, ref.Kind, ref.Name))
}

func (r *recorder) Eventf(obj runtime.Object, typ, reason, format string, args ...any) {
	r.Event(obj, typ, reason, fmt.Sprintf(format, args...))
}

func (r *recorder) AnnotatedEventf(obj runtime.Object, _ map[string]string, typ, reason, format string, args ...any) {
	r.Eventf(obj, typ, reason, format, args...)
}

// want checks that these events, and only these, came since the last call.
func (r *recorder) want(t *testing.T, events ...string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if fmt.Sprint(r.got) != fmt.Sprint(events) {
		t.Errorf("events %q, want %q", r.got, events)
	}
	r.got = nil
}

// A pod is not deleted while its claims cannot be read: afterwards nothing
// would say which disks to detach. Once they can, it is.
func TestClaimsReadBeforeDelete(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	h := start(t, node("a", corev1.ConditionUnknown, t0), t0.Add(time.Minute), func(cs *fake.Clientset) {
		cs.PrependReactor("get", "persistentvolumeclaims", func(k8stesting.Action) (bool, runtime.Object, error) {
			if broken.Load() {
				return true, nil, apierrors.NewServiceUnavailable("etcd is away")
			}
			return false, nil, nil
		})
	})
	h.decision(Fail)
	h.noDeletes()
	broken.Store(false)
	h.clock.Step(time.Second) // the retry's backoff
	h.decision(Fail)
	if dels := h.deleted(2); dels[1].GetName() != "va-pool-a" {
		t.Errorf("deleted %v", dels)
	}
}
