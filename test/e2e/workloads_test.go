package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// orphanedPool is what the controller's admin socket lists at
// /servers/orphaned (api.OrphanedPool; this module does not import dots).
type orphanedPool struct {
	Server, Namespace, Claim, StatefulSet string
	Ordinal, Replicas, Volumes            int
}

// serverSelector is the label selector of the release's server
// StatefulSet, as the chart passes it to the controller.
func serverSelector(t *testing.T, e *env) string {
	t.Helper()
	sts, err := e.kube.cs.AppsV1().StatefulSets(namespace).Get(e.ctx, "dots-server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return labels.SelectorFromSet(sts.Spec.Selector.MatchLabels).String()
}

// orphanedPoolStep scales the release's server StatefulSet below a server
// whose placement records say it holds a volume (its claim stays: the
// chart retains pool claims), and checks the controller reports the
// orphaned pool (the admin socket, `dots servers`, an Event on the claim)
// as the chart's controller ServiceAccount, then stops once scaled back.
func orphanedPoolStep(t *testing.T, s *steps, e *env) {
	ctx, k := e.ctx, e.kube
	s.run("orphaned pool: server StatefulSet scaled 2 -> 1 while pool-dots-server-1 holds a volume -> listed by the admin socket and `dots servers`, Event OrphanedPool on the claim; scaled back -> not listed", func() {
		sets := k.cs.AppsV1().StatefulSets(namespace)
		pvcs := k.cs.CoreV1().PersistentVolumeClaims(namespace)
		// The StatefulSet controller made both servers' claims.
		waitFor(t, "claims of both servers", time.Minute, nil, func() error {
			_, err := pvcs.Get(ctx, "pool-dots-server-1", metav1.GetOptions{})
			return err
		})
		// A volume the controller placed on dots-server-1, recorded as the
		// controller records it (pkg/placements: a Lease held by the server).
		holder := "dots-server-1"
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "volume.e2e-orphaned", Namespace: namespace,
			Labels: map[string]string{"dots.csi.dev/placement": "volume"}, Annotations: map[string]string{"dots.csi.dev/id": "e2e-orphaned"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
		leases := k.cs.CoordinationV1().Leases(namespace)
		if _, err := leases.Create(ctx, lease, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer leases.Delete(context.Background(), lease.Name, metav1.DeleteOptions{})
		scale := func(n int) {
			patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, n))
			if _, err := sets.Patch(ctx, "dots-server", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		scale(1)
		defer scale(2)
		admin := filepath.Join(e.dir, "admin.sock")
		waitFor(t, "dots-server-1 listed as an orphaned pool", time.Minute, e.ctrl, func() error {
			got, err := orphans(ctx, admin)
			if err != nil {
				return err
			}
			want := orphanedPool{Server: "dots-server-1", Namespace: namespace, Claim: "pool-dots-server-1", StatefulSet: "dots-server",
				Ordinal: 1, Replicas: 1, Volumes: 1}
			if len(got) != 1 || got[0] != want {
				return fmt.Errorf("orphaned pools %+v, want %+v", got, want)
			}
			return nil
		})
		dotsBin, err := filepath.Abs(envOr("DOTS_BIN", "../../bin/dots"))
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, dotsBin, "servers", "--endpoint=unix://"+e.ctrlSock, "--http=unix://"+admin).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ORPHANED pool "+namespace+"/pool-dots-server-1 (statefulset dots-server: replicas=1; volumes: 1)") {
			t.Errorf("dots servers: %v\n%s", err, out)
		}
		t.Logf("dots servers:\n%s", out)
		waitFor(t, "Event OrphanedPool on pool-dots-server-1", time.Minute, nil, func() error {
			evs, err := k.cs.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=pool-dots-server-1,reason=OrphanedPool"})
			if err != nil {
				return err
			}
			for _, ev := range evs.Items {
				if ev.Type == "Warning" && ev.InvolvedObject.Kind == "PersistentVolumeClaim" &&
					strings.Contains(ev.Message, "scale the statefulset to 2 replicas") && strings.Contains(ev.Message, "dots server drain dots-server-1") {
					t.Logf("event: %s", ev.Message)
					return nil
				}
			}
			return fmt.Errorf("%d OrphanedPool events, none as expected", len(evs.Items))
		})
		scale(2)
		waitFor(t, "no orphaned pool once scaled back", time.Minute, e.ctrl, func() error {
			got, err := orphans(ctx, admin)
			if err == nil && len(got) != 0 {
				err = fmt.Errorf("orphaned pools %+v", got)
			}
			return err
		})
	})
}

// orphans reads /servers/orphaned from the controller's admin socket.
func orphans(ctx context.Context, sock string) ([]orphanedPool, error) {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin/servers/orphaned", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /servers/orphaned: %s", resp.Status)
	}
	var out []orphanedPool
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// movedVolumeStep promotes the replica of a replicated claim's volume
// with `dots volume promote` and checks that the controller, as the chart's
// ServiceAccount, tells the claim that the pod using it must restart (the
// default: no --restart-pods-on-promotion), leaving the pod alone.
func movedVolumeStep(t *testing.T, s *steps, e *env) {
	ctx, k := e.ctx, e.kube
	s.run("volume moved: a pod using a claim of a 2-replica class; `dots volume promote` -> primary moved, Event VolumeMoved on the claim naming the pod, the pod kept", func() {
		bind := storagev1.VolumeBindingImmediate
		sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "dots-moved"}, Provisioner: "dots.csi.dev",
			Parameters: map[string]string{"replicas": "2", "replicationInterval": "1s"}, VolumeBindingMode: &bind}
		if _, err := k.cs.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer k.cs.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
		pvcs := k.cs.CoreV1().PersistentVolumeClaims(namespace)
		if _, err := pvcs.Create(ctx, pvcSpec("moved", sc.Name, "64Mi"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer pvcs.Delete(context.Background(), "moved", metav1.DeleteOptions{})
		_, pv := k.waitPVCBound(t, ctx, namespace, "moved", time.Minute, e.diag)
		// A pod of the claim (no scheduler here: it stays Pending, which
		// is all the controller looks at).
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "moved-user", Namespace: namespace},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app"}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "moved"}}}}}}
		pods := k.cs.CoreV1().Pods(namespace)
		created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer pods.Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		dotsBin, err := filepath.Abs(envOr("DOTS_BIN", "../../bin/dots"))
		if err != nil {
			t.Fatal(err)
		}
		id := pv.Spec.CSI.VolumeHandle
		var out []byte
		// The first full send may still be on its way: a promotion before
		// it is refused, so retry until the replica holds the volume.
		waitFor(t, "promotion of "+id, time.Minute, e.ctrl, func() error {
			out, err = exec.CommandContext(ctx, dotsBin, "volume", "promote", id, "-o", "json",
				"--endpoint=unix://"+e.ctrlSock, "--http=unix://"+filepath.Join(e.dir, "admin.sock")).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		var res struct{ From, To, HookError string }
		if err := json.Unmarshal(out, &res); err != nil || res.From == "" || res.To == "" || res.From == res.To || res.HookError != "" {
			t.Fatalf("promotion: %v\n%s", err, out)
		}
		t.Logf("promoted %s: %s -> %s", id, res.From, res.To)
		waitFor(t, "Event VolumeMoved on claim moved", time.Minute, nil, func() error {
			evs, err := k.cs.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=moved,reason=VolumeMoved"})
			if err != nil {
				return err
			}
			for _, ev := range evs.Items {
				if ev.Type == "Warning" && ev.InvolvedObject.Kind == "PersistentVolumeClaim" && strings.Contains(ev.Message, "restart pods moved-user") &&
					strings.Contains(ev.Message, "from server "+res.From+" to "+res.To) {
					t.Logf("event: %s", ev.Message)
					return nil
				}
			}
			return fmt.Errorf("%d VolumeMoved events, none as expected", len(evs.Items))
		})
		if p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{}); err != nil || p.UID != created.UID || p.DeletionTimestamp != nil {
			t.Errorf("the pod was touched without --restart-pods-on-promotion: %v", err)
		}
	})
}
