package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// chartGroupClass is the chart's default VolumeGroupSnapshotClass.
const chartGroupClass = "dots"

// groupFile is what the group step writes into each member, directly into
// its dataset's mountpoint on this host.
const groupFile = "group.txt"

func writeDataset(t *testing.T, e *env, pv *corev1.PersistentVolume, file, content string) {
	t.Helper()
	mp := zfsProp(t, e.dataset(t, pv), "mountpoint")
	if err := os.WriteFile(filepath.Join(mp, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readDataset(t *testing.T, e *env, pv *corev1.PersistentVolume, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(zfsProp(t, e.dataset(t, pv), "mountpoint"), file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// groupSnapshotStep: a VolumeGroupSnapshot over two PVCs chosen by a label
// selector becomes ready, and each member restores into a new PVC holding
// what its volume held when the group was taken. The second PVC is a clone
// of the first, so both are on one server, as a group must be.
func groupSnapshotStep(t *testing.T, s *steps, e *env, pv1 *corev1.PersistentVolume, payload string) {
	ctx, k := e.ctx, e.kube
	pvcs := k.cs.CoreV1().PersistentVolumeClaims(namespace)
	s.run("3b. VolumeGroupSnapshot of two PVCs by label -> readyToUse; each member restores into a new PVC holding its volume's data at the group's instant", func() {
		twin := pvcSpec("data-twin", chartStorageClass, "1Gi")
		twin.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "data"}
		twin.Labels = map[string]string{"e2e-group": "g1"}
		if _, err := pvcs.Create(ctx, twin, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, pvTwin := k.waitPVCBound(t, ctx, namespace, "data-twin", time.Minute, e.diag)
		data, err := pvcs.Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data.Labels = map[string]string{"e2e-group": "g1"}
		if _, err := pvcs.Update(ctx, data, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		writeDataset(t, e, pv1, groupFile, "data at the group")
		writeDataset(t, e, pvTwin, groupFile, "twin at the group")

		gs := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": groupSnapshotGVR.GroupVersion().String(), "kind": "VolumeGroupSnapshot",
			"metadata": map[string]any{"name": "gsnap", "namespace": namespace},
			"spec": map[string]any{
				"volumeGroupSnapshotClassName": chartGroupClass,
				"source":                       map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"e2e-group": "g1"}}},
			},
		}}
		if _, err := k.dyn.Resource(groupSnapshotGVR).Namespace(namespace).Create(ctx, gs, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var members []string
		waitFor(t, "VolumeGroupSnapshot readyToUse with 2 member VolumeSnapshots", 2*time.Minute, nil, func() error {
			got, err := k.dyn.Resource(groupSnapshotGVR).Namespace(namespace).Get(ctx, "gsnap", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if ready, _, _ := unstructured.NestedBool(got.Object, "status", "readyToUse"); !ready {
				st, _, _ := unstructured.NestedMap(got.Object, "status")
				return fmt.Errorf("status %v\n%s", st, e.diag())
			}
			members = members[:0]
			snaps, err := k.dyn.Resource(snapshotGVR).Namespace(namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, sn := range snaps.Items {
				g, _, _ := unstructured.NestedString(sn.Object, "status", "volumeGroupSnapshotName")
				owned := slices.ContainsFunc(sn.GetOwnerReferences(), func(o metav1.OwnerReference) bool {
					return o.Kind == "VolumeGroupSnapshot" && o.Name == "gsnap"
				})
				ready, _, _ := unstructured.NestedBool(sn.Object, "status", "readyToUse")
				if (g == "gsnap" || owned) && ready {
					members = append(members, sn.GetName())
				}
			}
			if len(members) != 2 {
				return fmt.Errorf("%d ready member VolumeSnapshots: %v", len(members), members)
			}
			return nil
		})
		if t.Failed() {
			return
		}
		// Written after the group: no restore may hold it.
		writeDataset(t, e, pv1, groupFile, "data after the group")
		t.Logf("group snapshot ready, members %v", members)

		var restored []string
		var contents []string
		for i, m := range members {
			name := fmt.Sprintf("group-restored-%d", i)
			pvc := pvcSpec(name, chartStorageClass, "1Gi")
			group := "snapshot.storage.k8s.io"
			pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: m}
			if _, err := pvcs.Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			restored = append(restored, name)
			_, pv := k.waitPVCBound(t, ctx, namespace, name, time.Minute, e.diag)
			if got := readDataset(t, e, pv, "hello.txt"); got != payload {
				t.Errorf("%s restored from %s holds %q in hello.txt, want %q", name, m, got, payload)
			}
			contents = append(contents, readDataset(t, e, pv, groupFile))
		}
		slices.Sort(contents)
		if want := []string{"data at the group", "twin at the group"}; !slices.Equal(contents, want) {
			t.Errorf("the restored members hold %q, want %q", contents, want)
		}

		// Cleanup: the restores, the group (its members with it), the twin.
		for _, n := range append(restored, "data-twin") {
			if err := pvcs.Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
				t.Error(err)
			}
		}
		if err := k.dyn.Resource(groupSnapshotGVR).Namespace(namespace).Delete(ctx, "gsnap", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "VolumeGroupSnapshot and its members deleted", 2*time.Minute, nil, func() error {
			_, err := k.dyn.Resource(groupSnapshotGVR).Namespace(namespace).Get(ctx, "gsnap", metav1.GetOptions{})
			if err == nil {
				return fmt.Errorf("gsnap still there\n%s", e.diag())
			}
			if !apierrors.IsNotFound(err) {
				return err
			}
			for _, m := range members {
				if _, err := k.dyn.Resource(snapshotGVR).Namespace(namespace).Get(ctx, m, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("member %s: %v", m, err)
				}
			}
			return nil
		})
	})
}
