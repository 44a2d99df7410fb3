package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// chartDir is the chart the tests install.
const chartDir = "../../deploy/helm/dots"

// release is the chart installed with `helm install` on the test's API
// server, as a user installs it: helm asks that API server what it serves
// (the snapshot CRDs or not) and looks up what the chart looks up (its
// certificates, the CSIDriver, the servers' StatefulSet, the nodes).
type release struct {
	name, ns   string
	helm       string // the binary of the tools cache
	kubeconfig string // the admin's
	values     string // the values file
	env        []string
}

// newRelease prepares release "dots" in ns with values (YAML); helm keeps
// its cache and config in the run's directory.
func newRelease(t *testing.T, c *cluster, ns, values string) *release {
	t.Helper()
	home := filepath.Join(c.dir, "helm")
	r := &release{name: "dots", ns: ns, helm: filepath.Join(c.bin, "helm"), kubeconfig: c.kubeconfig,
		values: filepath.Join(home, "values.yaml"),
		env: []string{"HELM_CACHE_HOME=" + filepath.Join(home, "cache"), "HELM_CONFIG_HOME=" + filepath.Join(home, "config"),
			"HELM_DATA_HOME=" + filepath.Join(home, "data")}}
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.values, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// run runs helm against the cluster, in the release's namespace.
func (r *release) run(ctx context.Context, args ...string) (string, error) {
	return runEnv(ctx, r.env, r.helm, append(args, "--kubeconfig", r.kubeconfig, "--namespace", r.ns)...)
}

// install runs `helm install` and returns its NOTES.
func (r *release) install(t *testing.T, ctx context.Context) string {
	t.Helper()
	out, err := r.run(ctx, "install", r.name, chartDir, "-f", r.values)
	if err != nil {
		t.Fatal(err)
	}
	return notes(out)
}

// upgrade runs `helm upgrade --reuse-values` with more flags and returns
// its NOTES.
func (r *release) upgrade(ctx context.Context, flags ...string) (string, error) {
	out, err := r.run(ctx, append([]string{"upgrade", r.name, chartDir, "--reuse-values"}, flags...)...)
	return notes(out), err
}

// manifest is what the release holds (`helm get manifest`).
func (r *release) manifest(t *testing.T, ctx context.Context) []*unstructured.Unstructured {
	t.Helper()
	out, err := r.run(ctx, "get", "manifest", r.name)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeYAML([]byte(out))
	if err != nil {
		t.Fatalf("helm get manifest: %v", err)
	}
	return objs
}

func notes(helmOutput string) string {
	if _, n, ok := strings.Cut(helmOutput, "\nNOTES:\n"); ok {
		return n
	}
	return ""
}

// checkReleaseObjects checks that every object of the release exists in
// the API server, and returns their kinds.
func checkReleaseObjects(t *testing.T, ctx context.Context, k *kube, objs []*unstructured.Unstructured) []string {
	t.Helper()
	var kinds []string
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			k.mapper.Reset()
			if m, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
				t.Errorf("%s %s: %v", gvk, o.GetName(), err)
				continue
			}
		}
		var ri dynamic.ResourceInterface = k.dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = k.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{}); err != nil {
			t.Errorf("%s %s/%s of the release: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
		kinds = append(kinds, o.GetKind())
	}
	return kinds
}

// checkSnapshotParts checks that the release has (want) or has not the
// VolumeSnapshotClass, the csi-snapshotter sidecar and the controller's
// RBAC on snapshot.storage.k8s.io.
func checkSnapshotParts(t *testing.T, ctx context.Context, k *kube, ns string, want bool) {
	t.Helper()
	_, err := k.dyn.Resource(snapshotClassGVR).Get(ctx, chartSnapshotClass, metav1.GetOptions{})
	if has := err == nil; has != want || (!has && !apierrors.IsNotFound(err)) {
		t.Errorf("VolumeSnapshotClass %s: %v, want it there: %v", chartSnapshotClass, err, want)
	}
	d, err := k.cs.AppsV1().Deployments(ns).Get(ctx, controllerSA, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if has := containerOf(d, "csi-snapshotter") != nil; has != want {
		t.Errorf("Deployment %s has csi-snapshotter: %v, want %v", d.Name, has, want)
	}
	cr, err := k.cs.RbacV1().ClusterRoles().Get(ctx, controllerSA, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if has := slices.ContainsFunc(cr.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.APIGroups, "snapshot.storage.k8s.io") }); has != want {
		t.Errorf("ClusterRole %s grants snapshot.storage.k8s.io: %v, want %v", cr.Name, has, want)
	}
}

func containerOf(d *appsv1.Deployment, name string) *corev1.Container {
	for i, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return &d.Spec.Template.Spec.Containers[i]
		}
	}
	return nil
}

// tlsSecrets are the release's certificates (generated by the chart).
func tlsSecrets(t *testing.T, ctx context.Context, k *kube, ns string) map[string]map[string][]byte {
	t.Helper()
	out := map[string]map[string][]byte{}
	for _, c := range []string{"ca", "server", "controller"} {
		s, err := k.cs.CoreV1().Secrets(ns).Get(ctx, "dots-tls-"+c, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the release's TLS Secret: %v", err)
		}
		out[c] = s.Data
	}
	return out
}

// writeReleaseTLS writes the release's server and controller certificates
// where dotsTLS finds them (DIR/dots-tls), so the servers and the
// controller this test runs talk mutual TLS with what the chart made.
func writeReleaseTLS(t *testing.T, secrets map[string]map[string][]byte, dir string) {
	t.Helper()
	tlsDir := filepath.Join(dir, "dots-tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(secrets["server"]["ca.crt"], secrets["controller"]["ca.crt"]) || len(secrets["server"]["ca.crt"]) == 0 {
		t.Fatal("the release's server and controller certificates are not of one CA")
	}
	files := map[string][]byte{"ca.crt": secrets["server"]["ca.crt"]}
	for _, c := range []string{"server", "controller"} {
		files[c+".crt"], files[c+".key"] = secrets[c]["tls.crt"], secrets[c]["tls.key"]
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(tlsDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// wantNotes fails for each phrase the release's NOTES do not hold.
func wantNotes(t *testing.T, notes string, phrases ...string) {
	t.Helper()
	for _, p := range phrases {
		if !strings.Contains(notes, p) {
			t.Errorf("NOTES do not say %q:\n%s", p, notes)
		}
	}
}

// installRelease is the e2e's install path: helm install without the
// snapshot CRDs, the CRDs, then helm upgrade: each time the release holds
// what the cluster can serve. It leaves the release's certificates where
// the servers and the controller read them.
func installRelease(t *testing.T, s *steps, e *env, crds []string) {
	ctx := e.ctx
	var rel *release
	s.run("chart: helm install without the snapshot CRDs: every object of the release created; no VolumeSnapshotClass, csi-snapshotter or snapshot RBAC; NOTES say what is missing", func() {
		createNamespace(t, ctx, e.kube, namespace)
		rel = newRelease(t, e.cluster, namespace, chartValues)
		n := rel.install(t, ctx)
		kinds := checkReleaseObjects(t, ctx, e.kube, rel.manifest(t, ctx))
		t.Logf("release objects: %s", strings.Join(kinds, " "))
		checkSnapshotParts(t, ctx, e.kube, namespace, false)
		wantNotes(t, n, "Snapshots: off", "does not serve snapshot.storage.k8s.io/v1", "client/config/crd",
			"No node has these labels yet", "kubectl label node NODE dots.csi.dev/storage-node=true",
			"kubectl exec -n "+namespace+" deploy/dots-controller -c dots -- dots servers")
	})
	if t.Failed() {
		return
	}
	s.run("snapshot CRDs", func() {
		e.kube.installCRDs(t, ctx, crds)
	})
	s.run("chart: helm upgrade --reuse-values: VolumeSnapshotClass, csi-snapshotter and their RBAC; the certificates kept; a larger server.storage.size refused, saying how to grow", func() {
		before := tlsSecrets(t, ctx, e.kube, namespace)
		n, err := rel.upgrade(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkReleaseObjects(t, ctx, e.kube, rel.manifest(t, ctx))
		checkSnapshotParts(t, ctx, e.kube, namespace, true)
		wantNotes(t, n, "Snapshots: on (csi-snapshotter, VolumeSnapshotClass "+chartSnapshotClass+")")
		after := tlsSecrets(t, ctx, e.kube, namespace)
		for c := range before {
			for key := range before[c] {
				if !bytes.Equal(before[c][key], after[c][key]) {
					t.Errorf("Secret dots-tls-%s: %s changed on upgrade", c, key)
				}
			}
		}
		_, err = rel.upgrade(ctx, "--set", "server.storage.size=2Ti")
		if err == nil || !strings.Contains(err.Error(), "kubectl -n "+namespace+" patch pvc pool-dots-server-N") {
			t.Errorf("upgrade to a larger server.storage.size: %v, want it refused with the way to grow", err)
		}
		if sts, err := e.kube.cs.AppsV1().StatefulSets(namespace).Get(ctx, "dots-server", metav1.GetOptions{}); err != nil ||
			sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "1Ti" {
			t.Errorf("the servers' StatefulSet after the refused upgrade: %v", err)
		}
		writeReleaseTLS(t, after, e.dir)
	})
}

// labelStorageNode labels a node as one that may run storage servers, as
// the README's install path does (kubectl label node).
func labelStorageNode(t *testing.T, ctx context.Context, k *kube, node string) {
	t.Helper()
	patch := []byte(`{"metadata":{"labels":{"dots.csi.dev/storage-node":"true"}}}`)
	if _, err := k.cs.CoreV1().Nodes().Patch(ctx, node, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("label node %s: %v", node, err)
	}
}

// waitUnschedulable waits until the scheduler reports the pod
// unschedulable for a reason that contains want, and returns the last
// reason. The first attempts may fail for passing reasons (a claim the PV
// controller has not bound yet), so a reason without want is waited past.
func waitUnschedulable(t *testing.T, ctx context.Context, k *kube, ns, pod, want string) string {
	t.Helper()
	var why string
	if err := eventually(time.Minute, func() error {
		p, err := k.cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				if why = c.Message; strings.Contains(why, want) {
					return nil
				}
			}
		}
		return fmt.Errorf("pod %s on %q: %v", pod, p.Spec.NodeName, p.Status.Conditions)
	}); err != nil {
		t.Fatalf("%s not reported unschedulable for %q (last reason %q): %v", pod, want, why, err)
	}
	return why
}
