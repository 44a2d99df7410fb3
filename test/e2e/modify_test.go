package e2e

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// chartAttributesClass is the VolumeAttributesClass of chartValues.
const chartAttributesClass = "dots-plain"

// modifyStep switches the first PVC (gzip from the StorageClass, in use by
// a pod, holding step 2b's file) to the chart's VolumeAttributesClass: the
// resizer calls ControllerModifyVolume, the dataset's properties follow,
// the claim reports the class, and the data is unchanged.
func modifyStep(t *testing.T, s *steps, e *env, pv *corev1.PersistentVolume, payload string) {
	s.run("4b. PVC switched to the chart's VolumeAttributesClass "+chartAttributesClass+" (compression=off atime=off) -> the dataset follows, status.currentVolumeAttributesClassName, data intact", func() {
		ctx, k := e.ctx, e.kube
		vac, err := k.cs.StorageV1().VolumeAttributesClasses().Get(ctx, chartAttributesClass, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the chart's VolumeAttributesClass: %v", err)
		}
		if vac.DriverName != driverName || vac.Parameters["compression"] != "off" {
			t.Fatalf("VolumeAttributesClass %s: driver %s parameters %v", vac.Name, vac.DriverName, vac.Parameters)
		}
		ds := e.dataset(t, pv)
		if c := zfsProp(t, ds, "compression"); c != "gzip" {
			t.Fatalf("compression %s before the switch, want gzip from the StorageClass", c)
		}
		start := time.Now()
		patch := []byte(fmt.Sprintf(`{"spec":{"volumeAttributesClassName":%q}}`, chartAttributesClass))
		pvcs := k.cs.CoreV1().PersistentVolumeClaims(namespace)
		if _, err := pvcs.Patch(ctx, "data", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "PVC status names the class", time.Minute, nil, func() error {
			pvc, err := pvcs.Get(ctx, "data", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cur := pvc.Status.CurrentVolumeAttributesClassName; cur == nil || *cur != chartAttributesClass {
				return fmt.Errorf("currentVolumeAttributesClassName %v, modifyVolumeStatus %+v, conditions %v\n%s",
					cur, pvc.Status.ModifyVolumeStatus, pvc.Status.Conditions, e.diag())
			}
			return nil
		})
		took := time.Since(start)
		for prop, want := range map[string]string{"compression": "off", "atime": "off"} {
			if got := zfsProp(t, ds, prop); got != want {
				t.Errorf("%s of %s = %s after the switch, want %s", prop, ds, got, want)
			}
		}
		if got := nfsRead(t, e.url(pv, "hello.txt")); got != payload {
			t.Errorf("after the switch the volume holds %q, want %q", got, payload)
		}
		if !t.Failed() {
			fmt.Printf("e2e-modify: ok class=%s switch_s=%.2f\n", chartAttributesClass, took.Seconds())
		}
	})
}
