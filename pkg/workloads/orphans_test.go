package workloads

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
)

var serverLabels = map[string]string{"app.kubernetes.io/name": "dots", "app.kubernetes.io/component": "server"}

func statefulSet(ns, name string, replicas int32, lbls map[string]string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		Spec: appsv1.StatefulSetSpec{Replicas: &replicas,
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "pool"}}}}}
}

func claim(ns, name string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name)}}
}

func orphanWorld() []runtime.Object {
	return []runtime.Object{
		statefulSet("dots", "dots-server", 1, serverLabels),
		// Another StatefulSet with claims of the same shape, not a server.
		statefulSet("dots", "db", 0, map[string]string{"app": "db"}),
		claim("dots", "pool-dots-server-0"), claim("dots", "pool-dots-server-1"), claim("dots", "pool-dots-server-2"),
		claim("dots", "pool-dots-server-x"), claim("dots", "pool-dots-server-01"), claim("dots", "pool-db-0"),
		claim("other", "pool-dots-server-3"),
	}
}

func newOrphans(t *testing.T, counts VolumeCounts, objs ...runtime.Object) (*Orphans, *fake.Clientset, *record.FakeRecorder, *Metrics) {
	t.Helper()
	cs := fake.NewClientset(objs...)
	rec := record.NewFakeRecorder(10)
	m := NewMetrics(prometheus.NewRegistry())
	return NewOrphans(cs, "dots", labels.SelectorFromSet(serverLabels), counts, rec, m), cs, rec, m
}

func servers(o *Orphans) []string {
	var out []string
	for _, p := range o.Orphans() {
		out = append(out, p.Server)
	}
	return out
}

func TestOrphansWithCounts(t *testing.T) {
	counts := func(context.Context) (map[string]int, error) {
		return map[string]int{"dots-server-0": 5, "dots-server-1": 3}, nil // server 2 was drained
	}
	o, cs, rec, metrics := newOrphans(t, counts, orphanWorld()...)
	ctx := context.Background()
	if err := o.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	got := o.Orphans()
	if len(got) != 1 || got[0].Server != "dots-server-1" || got[0].Claim != "pool-dots-server-1" || got[0].Volumes != 3 ||
		got[0].Ordinal != 1 || got[0].Replicas != 1 || got[0].StatefulSet != "dots-server" {
		t.Fatalf("orphans %+v, want dots-server-1 holding 3 volumes", got)
	}
	if n := testutil.ToFloat64(metrics.Orphaned); n != 1 {
		t.Errorf("gauge %v, want 1", n)
	}
	ev := events(rec)
	if len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning OrphanedPool") ||
		!strings.Contains(ev[0], "3 volume(s)") || !strings.Contains(ev[0], "to 2 replicas") || !strings.Contains(ev[0], "dots server drain dots-server-1") {
		t.Errorf("events %q, want one saying how to bring dots-server-1 back", ev)
	}
	// Still orphaned: no second Event.
	if err := o.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := events(rec); len(ev) != 0 {
		t.Errorf("events %q on a second scan", ev)
	}
	// Scaled back up: nothing orphaned.
	scale(t, cs, 2)
	if err := o.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if got := servers(o); len(got) != 0 {
		t.Errorf("orphans %v after scaling up", got)
	}
	if n := testutil.ToFloat64(metrics.Orphaned); n != 0 {
		t.Errorf("gauge %v, want 0", n)
	}
	// Down again: a new Event.
	scale(t, cs, 1)
	if err := o.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := events(rec); len(ev) != 1 {
		t.Errorf("events %q after scaling down again, want one", ev)
	}
}

func scale(t *testing.T, cs *fake.Clientset, n int32) {
	t.Helper()
	sts, err := cs.AppsV1().StatefulSets("dots").Get(context.Background(), "dots-server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sts.Spec.Replicas = &n
	if _, err := cs.AppsV1().StatefulSets("dots").Update(context.Background(), sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestOrphansWithoutCounts(t *testing.T) {
	failing := func(context.Context) (map[string]int, error) { return nil, errors.New("placements unreadable") }
	for name, counts := range map[string]VolumeCounts{"nil": nil, "failing": failing} {
		o, _, rec, metrics := newOrphans(t, counts, orphanWorld()...)
		if err := o.Scan(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := o.Orphans()
		if len(got) != 2 || got[0].Server != "dots-server-1" || got[1].Server != "dots-server-2" || got[0].Volumes != -1 {
			t.Errorf("%s counts: orphans %+v, want servers 1 and 2 with unknown volumes", name, got)
		}
		if n := testutil.ToFloat64(metrics.Orphaned); n != 2 {
			t.Errorf("%s counts: gauge %v, want 2", name, n)
		}
		if ev := events(rec); len(ev) != 2 {
			t.Errorf("%s counts: events %q, want two", name, ev)
		}
	}
}

func TestOrdinalOf(t *testing.T) {
	for name, want := range map[string]int{"pool-s-0": 0, "pool-s-12": 12, "pool-s-": -1, "pool-s-01": -1, "pool-s-x": -1, "pool-t-1": -1, "pool-s-1-2": -1, "pool-s--1": -1} {
		n, ok := ordinalOf(name, "pool-s-")
		if !ok {
			n = -1
		}
		if n != want {
			t.Errorf("ordinalOf(%q) = %d, %v; want %d", name, n, ok, want)
		}
	}
}

// TestOrphansQuietUnlessLeading: a replica that does not lead lists the
// orphaned pools but records no Event; once it leads, it records them.
func TestOrphansQuietUnlessLeading(t *testing.T) {
	o, _, rec, _ := newOrphans(t, nil, orphanWorld()...)
	o.SetLeading(false)
	ctx := context.Background()
	if err := o.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if got := servers(o); len(got) != 2 {
		t.Fatalf("orphans %v, want 2 listed while not leading", got)
	}
	if ev := events(rec); len(ev) != 0 {
		t.Fatalf("events %q while not leading", ev)
	}
	o.SetLeading(true)
	if err := o.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := events(rec); len(ev) != 2 {
		t.Fatalf("events %q once leading, want 2", ev)
	}
}
