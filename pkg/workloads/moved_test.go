package workloads

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

const driver = "dots.csi.dev"

func pv(name, drv, handle, ns, claim string) *corev1.PersistentVolume {
	p := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: drv, VolumeHandle: handle}}}}
	if claim != "" {
		p.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: claim, UID: types.UID("uid-" + claim)}
	}
	return p
}

func pod(ns, name string, claims ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)}}
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	for _, c := range claims {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: c, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	return p
}

// world: the moved volume's PV bound to app/data, two pods using it, one
// pod of the namespace using another claim, a pod of another namespace
// using a claim of the same name, and another driver's PV with the same
// handle.
func world() []runtime.Object {
	return []runtime.Object{
		pv("pv-other-driver", "other.csi.dev", "dots-server-0/vol", "app", "other"),
		pv("pv-dots", driver, "dots-server-0/vol", "app", "data"),
		pv("pv-dots-2", driver, "dots-server-0/vol2", "app", "data2"),
		pod("app", "web-0", "data"), pod("app", "web-1", "data"), pod("app", "db-0", "data2"), pod("other", "web-0", "data"),
	}
}

func newMover(t *testing.T, restart bool, objs ...runtime.Object) (*Mover, *fake.Clientset, *record.FakeRecorder, *Metrics) {
	t.Helper()
	cs := fake.NewClientset(objs...)
	rec := record.NewFakeRecorder(10)
	m := NewMetrics(prometheus.NewRegistry())
	return NewMover(cs, driver, restart, rec, m), cs, rec, m
}

func podNames(t *testing.T, cs *fake.Clientset, ns string) []string {
	t.Helper()
	l, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range l.Items {
		out = append(out, p.Name)
	}
	return out
}

func events(rec *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestVolumeMovedEventByDefault(t *testing.T) {
	m, cs, rec, metrics := newMover(t, false, world()...)
	if err := m.VolumeMoved(context.Background(), "dots-server-0/vol", "dots-server-0", "dots-server-1"); err != nil {
		t.Fatal(err)
	}
	ev := events(rec)
	if len(ev) != 1 {
		t.Fatalf("events %q, want one", ev)
	}
	for _, want := range []string{"Warning VolumeMoved", "dots-server-0/vol", "to dots-server-1", "web-0, web-1"} {
		if !strings.Contains(ev[0], want) {
			t.Errorf("event %q lacks %q", ev[0], want)
		}
	}
	if strings.Contains(ev[0], "db-0") {
		t.Errorf("event %q names a pod of another claim", ev[0])
	}
	if got := podNames(t, cs, "app"); len(got) != 3 {
		t.Errorf("pods deleted without restart mode: left %v", got)
	}
	if n := testutil.ToFloat64(metrics.Events.WithLabelValues(ReasonVolumeMoved)); n != 1 {
		t.Errorf("events metric %v, want 1", n)
	}
	if n := testutil.ToFloat64(metrics.PodsRestarted); n != 0 {
		t.Errorf("pods restarted %v, want 0", n)
	}
}

func TestVolumeMovedRestartsPodsOfTheClaim(t *testing.T) {
	m, cs, rec, metrics := newMover(t, true, world()...)
	if err := m.VolumeMoved(context.Background(), "dots-server-0/vol", "dots-server-0", "dots-server-1"); err != nil {
		t.Fatal(err)
	}
	if got := podNames(t, cs, "app"); len(got) != 1 || got[0] != "db-0" {
		t.Errorf("pods left in app: %v, want [db-0]", got)
	}
	if got := podNames(t, cs, "other"); len(got) != 1 {
		t.Errorf("a pod of another namespace was deleted: left %v", got)
	}
	if n := testutil.ToFloat64(metrics.PodsRestarted); n != 2 {
		t.Errorf("pods restarted %v, want 2", n)
	}
	ev := events(rec)
	if len(ev) != 1 || !strings.HasPrefix(ev[0], "Normal VolumeMoved") || !strings.Contains(ev[0], "restarted pods web-0, web-1") {
		t.Errorf("events %q, want one Normal naming the restarted pods", ev)
	}
}

func TestVolumeMovedWithoutPVOrPods(t *testing.T) {
	m, _, rec, _ := newMover(t, true, world()...)
	// Another driver's PV with the handle is not ours: nothing to do.
	if err := m.VolumeMoved(context.Background(), "dots-server-0/nope", "a", "b"); err != nil {
		t.Fatal(err)
	}
	m2, _, rec2, _ := newMover(t, false, pv("pv", driver, "s/v", "app", "data"), pv("unbound", driver, "s/u", "", ""))
	for _, id := range []string{"s/v", "s/u"} {
		if err := m2.VolumeMoved(context.Background(), id, "a", "b"); err != nil {
			t.Fatal(err)
		}
	}
	if ev := append(events(rec), events(rec2)...); len(ev) != 0 {
		t.Errorf("events %q without pods to restart", ev)
	}
}

func TestVolumeMovedDeleteFails(t *testing.T) {
	m, cs, rec, metrics := newMover(t, true, world()...)
	cs.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.DeleteAction).GetName() == "web-1" {
			return true, nil, errors.New("forbidden by a webhook")
		}
		return false, nil, nil
	})
	err := m.VolumeMoved(context.Background(), "dots-server-0/vol", "dots-server-0", "dots-server-1")
	if err == nil || !strings.Contains(err.Error(), "web-1: forbidden by a webhook") {
		t.Fatalf("error %v, want web-1's", err)
	}
	if n := testutil.ToFloat64(metrics.PodsRestarted); n != 1 {
		t.Errorf("pods restarted %v, want 1", n)
	}
	ev := events(rec)
	if len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning VolumeMoved") || !strings.Contains(ev[0], "restart them by hand") {
		t.Errorf("events %q, want one Warning asking for a restart by hand", ev)
	}
}
