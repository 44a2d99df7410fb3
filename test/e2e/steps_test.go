package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

const gi = int64(1) << 30

// userPath walks the steps of a user, each on what the previous left: from a
// claim through attach, snapshot, restore, resize, reclaim and node publish
// to detach.
func userPath(t *testing.T, s *steps, e *env) {
	ctx, k := e.ctx, e.kube
	pvcs := k.cs.CoreV1().PersistentVolumeClaims(namespace)
	payload := fmt.Sprintf("written through NFS at %s\n", time.Now().Format(time.RFC3339Nano))
	var pv1 *corev1.PersistentVolume

	s.run("1. StorageClass (from the chart) + 1Gi PVC -> Bound; PV points at a server's NFS address", func() {
		if _, err := pvcs.Create(ctx, pvcSpec("data", chartStorageClass, "1Gi"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, pv1 = k.waitPVCBound(t, ctx, namespace, "data", time.Minute, e.diag)
		attrs := checkPV(t, e, pv1, gi)
		ds := e.dataset(t, pv1)
		if ds == "" {
			t.Fatalf("no dataset for %s", pv1.Spec.CSI.VolumeHandle)
		}
		if q := zfsProp(t, ds, "refquota"); q != strconv.FormatInt(gi, 10) {
			t.Errorf("refquota %s, want %d", q, gi)
		}
		// The StorageClass parameter reached the dataset.
		if c := zfsProp(t, ds, "compression"); c != "gzip" {
			t.Errorf("compression %s, want gzip from the StorageClass", c)
		}
		t.Logf("PV %s: handle %s, server %s, nfs %s:%s, export %s, dataset %s", pv1.Name, pv1.Spec.CSI.VolumeHandle,
			attrs[ctxServer], attrs[ctxNFSAddress], attrs[ctxNFSPort], attrs[ctxExport], ds)
		// The controller recorded where it sent the create, as the
		// controller's ServiceAccount, before it sent it.
		if holder := placement(t, e, "volume", pv1.Name); holder != attrs[ctxServer] {
			t.Errorf("placement of %s names %q, want its server %q", pv1.Name, holder, attrs[ctxServer])
		}
	})
	if t.Failed() {
		return
	}

	// The pods that use the volumes (on the node, so the attach-detach
	// controller attaches them) and the volumes attached, for step 8.
	var pods []string
	var attached []*corev1.PersistentVolume
	var attachTime time.Duration
	s.run("2a. the export refuses 127.0.0.1 (published to no node); Pod on "+nodeName+" -> VolumeAttachment attached -> export admits "+nodeID+" only", func() {
		checkACLEmpty(t, e, pv1)
		checkPublished(t, e, pv1)
		checkRefused(t, e, pv1, "hello.txt")
		if t.Failed() {
			return
		}
		start := time.Now()
		startPod(t, e, "e2e-attach-data", "data")
		pods = append(pods, "e2e-attach-data")
		va := waitAttached(t, e, pv1)
		attachTime = time.Since(start)
		attached = append(attached, pv1)
		t.Logf("VolumeAttachment %s attached %.2fs after the pod was created", va.Name, attachTime.Seconds())
		checkACLAdmitsNode(t, e, pv1)
		checkPublished(t, e, pv1, nodeID)
		if rec := zfsProp(t, e.dataset(t, pv1), "dots:published"); !strings.Contains(rec, nodeID) {
			t.Errorf("dots:published of %s is %q, want it to name %s", pv1.Name, rec, nodeID)
		}
	})
	if t.Failed() {
		return
	}

	var snapContent string
	s.run("2b. write through the export (libnfs, NFSv3; ControllerPublish admitted 127.0.0.1), VolumeSnapshot -> readyToUse", func() {
		nfsWrite(t, e.url(pv1, "hello.txt"), []byte(payload))
		if got := nfsRead(t, e.url(pv1, "hello.txt")); got != payload {
			t.Fatalf("read back %q, want %q", got, payload)
		}
		snap := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
			"metadata": map[string]any{"name": "snap", "namespace": namespace},
			"spec": map[string]any{
				"volumeSnapshotClassName": chartSnapshotClass,
				"source":                  map[string]any{"persistentVolumeClaimName": "data"},
			},
		}}
		if _, err := k.dyn.Resource(snapshotGVR).Namespace(namespace).Create(ctx, snap, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "VolumeSnapshot readyToUse", time.Minute, nil, func() error {
			got, err := k.dyn.Resource(snapshotGVR).Namespace(namespace).Get(ctx, "snap", metav1.GetOptions{})
			if err != nil {
				return err
			}
			ready, _, _ := unstructured.NestedBool(got.Object, "status", "readyToUse")
			if !ready {
				st, _, _ := unstructured.NestedMap(got.Object, "status")
				return fmt.Errorf("status %v\n%s", st, e.diag())
			}
			snapContent, _, _ = unstructured.NestedString(got.Object, "status", "boundVolumeSnapshotContentName")
			return nil
		})
		t.Logf("snapshot ready, content %s", snapContent)
	})
	if t.Failed() {
		return
	}

	s.run("3. PVC from the snapshot -> Bound, refused until a 2nd pod on "+nodeName+" attaches it, then holds the snapshot's data", func() {
		pvc := pvcSpec("restored", chartStorageClass, "1Gi")
		group := "snapshot.storage.k8s.io"
		pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: "snap"}
		if _, err := pvcs.Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, pv := k.waitPVCBound(t, ctx, namespace, "restored", time.Minute, e.diag)
		checkPV(t, e, pv, gi)
		// A new volume, published to no node, whatever its origin is.
		checkACLEmpty(t, e, pv)
		checkPublished(t, e, pv)
		checkRefused(t, e, pv, "hello.txt")
		if t.Failed() {
			return
		}
		startPod(t, e, "e2e-attach-restored", "restored")
		pods = append(pods, "e2e-attach-restored")
		waitAttached(t, e, pv)
		attached = append(attached, pv)
		checkACLAdmitsNode(t, e, pv)
		checkPublished(t, e, pv, nodeID)
		if got := nfsRead(t, e.url(pv, "hello.txt")); got != payload {
			t.Fatalf("restored volume holds %q, want %q", got, payload)
		}
		// Writing to the clone leaves the origin alone.
		nfsWrite(t, e.url(pv, "clone-only.txt"), []byte("only in the clone\n"))
		if got, err := nfsTryRead(e.url(pv1, "clone-only.txt")); err == nil {
			t.Fatalf("a file written to the clone shows up in the origin: %q", got)
		}
	})

	groupSnapshotStep(t, s, e, pv1, payload)

	s.run("4. expand the first PVC to 2Gi -> PV, PVC and the dataset's quota follow", func() {
		patch := []byte(`{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}`)
		if _, err := pvcs.Patch(ctx, "data", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		want := resource.MustParse("2Gi")
		waitFor(t, "PV and PVC at 2Gi", time.Minute, nil, func() error {
			pv, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, pv1.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			pvc, err := pvcs.Get(ctx, "data", metav1.GetOptions{})
			if err != nil {
				return err
			}
			pvCap, pvcCap := pv.Spec.Capacity[corev1.ResourceStorage], pvc.Status.Capacity[corev1.ResourceStorage]
			if pvCap.Cmp(want) != 0 || pvcCap.Cmp(want) != 0 {
				return fmt.Errorf("PV %s, PVC status %s, conditions %v\n%s", pvCap.String(), pvcCap.String(), pvc.Status.Conditions, e.diag())
			}
			return nil
		})
		if q := zfsProp(t, e.dataset(t, pv1), "refquota"); q != strconv.FormatInt(2*gi, 10) {
			t.Errorf("refquota %s after expansion, want %d", q, 2*gi)
		}
	})

	modifyStep(t, s, e, pv1, payload)

	s.run("5. StatefulSet with a volumeClaimTemplate scaled 0 -> 3 -> three PVCs Bound", func() {
		sts := statefulSet("web", chartStorageClass)
		if _, err := k.cs.AppsV1().StatefulSets(namespace).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		scale(t, e, "web", 3)
		servers := map[string]int{}
		for i := 0; i < 3; i++ {
			_, pv := k.waitPVCBound(t, ctx, namespace, fmt.Sprintf("data-web-%d", i), 2*time.Minute, e.diag)
			servers[checkPV(t, e, pv, 100<<20)[ctxServer]]++
		}
		t.Logf("claims placed on servers: %v", servers)
	})

	s.run("6. delete PVCs: reclaimPolicy Delete removes the datasets, Retain keeps them", func() {
		// Pods that will never run still hold their claims (PVC protection):
		// scale down first, as a user would.
		scale(t, e, "web", 0)
		waitFor(t, "StatefulSet pods gone", time.Minute, nil, func() error {
			pods, err := k.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err == nil && len(pods.Items) > 0 {
				err = fmt.Errorf("%d pods left", len(pods.Items))
			}
			return err
		})
		var deleted []*corev1.PersistentVolume
		for i := 0; i < 3; i++ {
			name := fmt.Sprintf("data-web-%d", i)
			pvc, err := pvcs.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pv, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			deleted = append(deleted, pv)
			if err := pvcs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, pv := range deleted {
			waitGone(t, "PV "+pv.Name, time.Minute, func() error {
				_, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
				return err
			}, e.diag)
			if ds := e.dataset(t, pv); ds != "" {
				t.Errorf("dataset %s of deleted PV %s still exists", ds, pv.Name)
			}
			if holder := placement(t, e, "volume", pv.Name); holder != "" {
				t.Errorf("placement of deleted PV %s still names %s", pv.Name, holder)
			}
		}

		retain := corev1.PersistentVolumeReclaimRetain
		immediate := storagev1.VolumeBindingImmediate
		sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "dots-retain"}, Provisioner: driverName,
			ReclaimPolicy: &retain, VolumeBindingMode: &immediate}
		if _, err := k.cs.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := pvcs.Create(ctx, pvcSpec("kept", "dots-retain", "100Mi"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, pv := k.waitPVCBound(t, ctx, namespace, "kept", time.Minute, e.diag)
		if err := pvcs.Delete(ctx, "kept", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "retained PV Released", time.Minute, nil, func() error {
			got, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
			if err == nil && got.Status.Phase != corev1.VolumeReleased {
				err = fmt.Errorf("phase %s", got.Status.Phase)
			}
			return err
		})
		// Give the provisioner time to (wrongly) delete it.
		time.Sleep(3 * time.Second)
		if e.dataset(t, pv) == "" {
			t.Errorf("dataset of retained PV %s was deleted", pv.Name)
		}
		if err := k.cs.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{}); err != nil {
			t.Error(err)
		}
	})

	s.run("7. as the kubelet: NodeStage + NodePublish (local-bind) of the first PV, read step 2b's data", func() {
		nodePublishAndRead(t, e, pv1, payload)
	})

	s.run("8. force-delete the pods -> VolumeAttachments deleted (ControllerUnpublish) -> exports admit no one, refuse 127.0.0.1 again", func() {
		if len(pods) == 0 {
			t.Fatal("no pods to delete: step 2a failed")
		}
		start := time.Now()
		for _, name := range pods {
			forceDeletePod(t, e, name)
		}
		waitDetached(t, e, attached...)
		detachTime := time.Since(start)
		t.Logf("%d VolumeAttachments deleted and their exports emptied %.2fs after the pods were deleted", len(attached), detachTime.Seconds())
		for _, pv := range attached {
			checkACLEmpty(t, e, pv)
			checkPublished(t, e, pv)
			if rec := zfsProp(t, e.dataset(t, pv), "dots:published"); strings.Contains(rec, nodeName) {
				t.Errorf("dots:published of %s is %q after detach, want no node", pv.Name, rec)
			}
			// The file is there: only access can make the read fail.
			checkRefused(t, e, pv, "hello.txt")
		}
		if !t.Failed() {
			fmt.Printf("e2e-attach: ok attach_s=%.2f detach_s=%.2f volumes=%d\n", attachTime.Seconds(), detachTime.Seconds(), len(attached))
		}
	})

	s.run("the chart's RBAC sufficed: no sidecar request was forbidden", func() {
		for _, p := range e.side.all() {
			if lines := p.matching(5, "forbidden"); lines != "" {
				t.Errorf("%s was refused by the API server (chart RBAC too narrow):\n%s", p.name, lines)
			}
		}
	})
}

// checkPV checks what every dots PV carries and returns its attributes.
func checkPV(t *testing.T, e *env, pv *corev1.PersistentVolume, size int64) map[string]string {
	t.Helper()
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driverName {
		t.Fatalf("PV %s is not a %s volume: %+v", pv.Name, driverName, pv.Spec.PersistentVolumeSource)
	}
	attrs := pv.Spec.CSI.VolumeAttributes
	srv, ok := e.servers[attrs[ctxServer]]
	if !ok {
		t.Fatalf("PV %s: server %q is none of ours; attributes %v", pv.Name, attrs[ctxServer], attrs)
	}
	if attrs[ctxNFSAddress] != "127.0.0.1" || attrs[ctxNFSPort] != strconv.Itoa(srv.nfsPort) {
		t.Errorf("PV %s: NFS address %s:%s, want 127.0.0.1:%d", pv.Name, attrs[ctxNFSAddress], attrs[ctxNFSPort], srv.nfsPort)
	}
	if !strings.HasPrefix(attrs[ctxExport], "/") {
		t.Errorf("PV %s: export %q", pv.Name, attrs[ctxExport])
	}
	if !strings.HasPrefix(pv.Spec.CSI.VolumeHandle, srv.name+"/") {
		t.Errorf("PV %s: handle %s does not name server %s", pv.Name, pv.Spec.CSI.VolumeHandle, srv.name)
	}
	if c := pv.Spec.Capacity[corev1.ResourceStorage]; c.Value() != size {
		t.Errorf("PV %s: capacity %s, want %d", pv.Name, c.String(), size)
	}
	return attrs
}

// dataset returns the dataset behind a PV ("" when it is gone).
func (e *env) dataset(t *testing.T, pv *corev1.PersistentVolume) string {
	t.Helper()
	server, volume, _ := strings.Cut(pv.Spec.CSI.VolumeHandle, "/")
	s, ok := e.servers[server]
	if !ok {
		t.Fatalf("PV %s on unknown server %q", pv.Name, server)
	}
	return datasetOf(t, s.pool, volume)
}

// url is the libnfs URL of a file in a PV's export.
func (e *env) url(pv *corev1.PersistentVolume, file string) string {
	attrs := pv.Spec.CSI.VolumeAttributes
	return nfsURL(attrs[ctxExport], file, e.servers[attrs[ctxServer]])
}

func statefulSet(name, class string) *appsv1.StatefulSet {
	zero := int32(0)
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &zero,
			ServiceName:         name,
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.k8s.io/pause:3.10",
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				}}},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{*pvcSpec("data", class, "100Mi")},
		},
	}
}

func scale(t *testing.T, e *env, name string, replicas int) {
	t.Helper()
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas))
	if _, err := e.kube.cs.AppsV1().StatefulSets(namespace).Patch(e.ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// leftoverMounts fails the test if mounts remain below dir.
func leftoverMounts(t *testing.T, dir string) {
	t.Helper()
	if m := mountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts left below %s: %v", dir, m)
	}
}

// kubeletDirs makes the directories the kubelet would: the staging
// directory, and the parent of the publish target (the plugin makes the
// target itself).
func kubeletDirs(t *testing.T, root, pvName string) (staging, target string) {
	t.Helper()
	staging = filepath.Join(root, "plugins/kubernetes.io/csi", driverName, pvName, "globalmount")
	target = filepath.Join(root, "pods/e2e-pod-uid/volumes/kubernetes.io~csi", pvName, "mount")
	for _, d := range []string{staging, filepath.Dir(target)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	return staging, target
}

// placement returns the server the controller's placement record (a Lease
// named KIND.NAME) names, or "" when there is none.
func placement(t *testing.T, e *env, kind, name string) string {
	t.Helper()
	l, err := e.kube.cs.CoordinationV1().Leases(namespace).Get(e.ctx, kind+"."+name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return ""
	}
	if err != nil {
		t.Fatalf("placement lease of %s: %v", name, err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
