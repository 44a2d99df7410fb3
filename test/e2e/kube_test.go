package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

var (
	snapshotGVR      = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}
	snapshotClassGVR = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotclasses"}
	groupSnapshotGVR = schema.GroupVersionResource{Group: "groupsnapshot.storage.k8s.io", Version: "v1", Resource: "volumegroupsnapshots"}
	groupClassGVR    = schema.GroupVersionResource{Group: "groupsnapshot.storage.k8s.io", Version: "v1", Resource: "volumegroupsnapshotclasses"}
	crdGVR           = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// kube bundles the clients the test uses, as the admin.
type kube struct {
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newKube(t *testing.T, cfg *rest.Config) *kube {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &kube{cs: cs, dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

// decodeYAML splits a multi-document YAML stream into objects.
func decodeYAML(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}

// installCRDs creates the snapshot CRDs and waits until they are served.
func (k *kube) installCRDs(t *testing.T, ctx context.Context, files []string) {
	t.Helper()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeYAML(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, o := range objs {
			if _, err := k.dyn.Resource(crdGVR).Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("create CRD %s: %v", o.GetName(), err)
			}
		}
	}
	waitFor(t, "snapshot CRDs served", time.Minute, nil, func() error {
		_, err := k.dyn.Resource(snapshotClassGVR).List(ctx, metav1.ListOptions{})
		if err == nil {
			_, err = k.dyn.Resource(snapshotGVR).Namespace("default").List(ctx, metav1.ListOptions{})
		}
		if err == nil {
			_, err = k.dyn.Resource(groupClassGVR).List(ctx, metav1.ListOptions{})
		}
		return err
	})
	k.mapper.Reset()
}

// waitPVCBound waits for a claim to be Bound and returns it with its PV.
func (k *kube) waitPVCBound(t *testing.T, ctx context.Context, ns, name string, timeout time.Duration, diag func() string) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume) {
	t.Helper()
	var pvc *corev1.PersistentVolumeClaim
	if err := eventually(timeout, func() error {
		var err error
		pvc, err = k.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && pvc.Status.Phase != corev1.ClaimBound {
			err = fmt.Errorf("phase %v", pvcPhase(pvc))
		}
		return err
	}); err != nil {
		t.Fatalf("PVC %s/%s not Bound after %s (%v); events:\n%s\n%s", ns, name, timeout,
			err, k.events(ctx, ns, name), diag())
	}
	pv, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pvc, pv
}

func pvcPhase(pvc *corev1.PersistentVolumeClaim) corev1.PersistentVolumeClaimPhase {
	if pvc == nil {
		return ""
	}
	return pvc.Status.Phase
}

// events returns the events about an object, for failure messages.
func (k *kube) events(ctx context.Context, ns, name string) string {
	evs, err := k.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b bytes.Buffer
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == name {
			fmt.Fprintf(&b, "  %s %s (x%d): %s\n", e.Type, e.Reason, e.Count, e.Message)
		}
	}
	if b.Len() == 0 {
		fmt.Fprintf(&b, "  (none of %d events in %s)\n", len(evs.Items), ns)
	}
	return b.String()
}

// waitGone waits until get reports NotFound.
func waitGone(t *testing.T, what string, timeout time.Duration, get func() error, diag func() string) {
	t.Helper()
	if err := eventually(timeout, func() error {
		if err := get(); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	}); err != nil {
		t.Fatalf("%s still exists after %s: %v\n%s", what, timeout, err, diag())
	}
}

func pvcSpec(name, class, size string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse(size),
			}},
		},
	}
}
