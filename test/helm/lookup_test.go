//go:build integration

package helm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeCluster is the least of a Kubernetes API server that helm's lookup
// needs: discovery of Secrets, Nodes, CSIDrivers and StatefulSets, and GET
// of single objects and lists.
// `helm template --dry-run=server` looks objects up in it, as `helm upgrade`
// does in a real cluster, and talks to the cluster for nothing else.
type fakeCluster struct {
	mu      sync.Mutex
	objects map[string]any // by URL path
	gets    []string
}

func newFakeCluster(t *testing.T) (*fakeCluster, string) {
	t.Helper()
	fc := &fakeCluster{objects: map[string]any{}}
	srv := httptest.NewServer(fc)
	t.Cleanup(srv.Close)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: %q}}]
users: [{name: fake, user: {token: fake}}]
contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: %s}}]
current-context: fake
`, srv.URL, namespace)
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return fc, kubeconfig
}

func (fc *fakeCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	resources := func(gv string, rs ...map[string]any) {
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": rs})
	}
	switch p := r.URL.Path; {
	case r.Method != http.MethodGet:
		w.WriteHeader(http.StatusMethodNotAllowed)
	case p == "/api/v1":
		resources("v1", map[string]any{"name": "secrets", "singularName": "secret", "namespaced": true, "kind": "Secret", "verbs": []string{"get"}},
			map[string]any{"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "verbs": []string{"get", "list"}})
	case p == "/apis/apps/v1":
		resources("apps/v1", map[string]any{"name": "statefulsets", "singularName": "statefulset", "namespaced": true, "kind": "StatefulSet", "verbs": []string{"get"}})
	case p == "/apis/storage.k8s.io/v1":
		resources("storage.k8s.io/v1", map[string]any{"name": "csidrivers", "singularName": "csidriver", "namespaced": false, "kind": "CSIDriver", "verbs": []string{"get"}})
	default:
		fc.gets = append(fc.gets, p)
		if o, ok := fc.objects[p]; ok {
			_ = json.NewEncoder(w).Encode(o)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
	}
}

// addSecret stores a Secret as the chart rendered it.
func (fc *fakeCluster) addSecret(s obj) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.objects[fmt.Sprintf("/api/v1/namespaces/%s/secrets/%s", namespace, s.name())] = map[string]any(s)
}

func (fc *fakeCluster) addCSIDriver(attachRequired bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.objects["/apis/storage.k8s.io/v1/csidrivers/dots.csi.dev"] = map[string]any{
		"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": map[string]any{"name": "dots.csi.dev"},
		"spec": map[string]any{"attachRequired": attachRequired},
	}
}

// addStatefulSet stores the servers' StatefulSet with the pool claim
// template's size, class ("" for none) and volume mode.
func (fc *fakeCluster) addStatefulSet(size, class, mode string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	spec := map[string]any{"accessModes": []string{"ReadWriteOnce"}, "volumeMode": mode,
		"resources": map[string]any{"requests": map[string]any{"storage": size}}}
	if class != "" {
		spec["storageClassName"] = class
	}
	fc.objects["/apis/apps/v1/namespaces/"+namespace+"/statefulsets/dots-server"] = map[string]any{
		"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": map[string]any{"name": "dots-server", "namespace": namespace},
		"spec": map[string]any{"volumeClaimTemplates": []any{map[string]any{"metadata": map[string]any{"name": "pool"}, "spec": spec}}},
	}
}

func (fc *fakeCluster) looked(path string) bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, g := range fc.gets {
		if g == path {
			return true
		}
	}
	return false
}

// renderUpgrade renders as `helm upgrade` would against the fake cluster.
func renderUpgrade(t *testing.T, kubeconfig string, flags ...string) (manifests, error) {
	t.Helper()
	return renderErr(t, append([]string{"--dry-run=server", "--is-upgrade", "--kubeconfig", kubeconfig}, flags...)...)
}

// An upgrade renders the Secrets it finds exactly as they are: no new CA,
// no new certificate, nothing for the pods to reload.
func TestTLSReusedOnUpgrade(t *testing.T) {
	first := render(t)
	fc, kubeconfig := newFakeCluster(t)
	for _, s := range first.all("Secret") {
		fc.addSecret(s)
	}
	again, err := renderUpgrade(t, kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dots-tls-ca", "dots-tls-server", "dots-tls-controller"} {
		if !fc.looked("/api/v1/namespaces/" + namespace + "/secrets/" + name) {
			t.Errorf("the chart did not look Secret %s up", name)
		}
		if was, is := dig(first.get(t, "Secret", name), "data"), dig(again.get(t, "Secret", name), "data"); fmt.Sprint(was) != fmt.Sprint(is) {
			t.Errorf("Secret %s changed on upgrade", name)
		}
	}
}

// A certificate whose Secret is gone (deleted to renew it, or a component
// added later) is issued from the CA that stays, so every other
// certificate stays trusted.
func TestTLSMissingCertIssuedFromKeptCA(t *testing.T) {
	first := render(t)
	fc, kubeconfig := newFakeCluster(t)
	fc.addSecret(first.get(t, "Secret", "dots-tls-ca"))
	fc.addSecret(first.get(t, "Secret", "dots-tls-server"))
	again, err := renderUpgrade(t, kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	data := checkTLSSecrets(t, again) // the new one verifies against the kept CA
	for _, name := range []string{"dots-tls-ca", "dots-tls-server"} {
		if fmt.Sprint(dig(first.get(t, "Secret", name), "data")) != fmt.Sprint(dig(again.get(t, "Secret", name), "data")) {
			t.Errorf("Secret %s changed", name)
		}
	}
	old := checkTLSSecrets(t, first)
	if string(old["dots-tls-controller"]["tls.key"]) == string(data["dots-tls-controller"]["tls.key"]) {
		t.Error("the controller's key was not made anew")
	}
}

// Without its CA (deleted to rotate everything), the chart makes a new CA
// and issues every certificate from it: certificates of a CA that cannot
// sign any more are not kept.
func TestTLSNewCAReissuesAll(t *testing.T) {
	first := render(t)
	fc, kubeconfig := newFakeCluster(t)
	fc.addSecret(first.get(t, "Secret", "dots-tls-server"))
	fc.addSecret(first.get(t, "Secret", "dots-tls-controller"))
	again, err := renderUpgrade(t, kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	checkTLSSecrets(t, again)
	for _, name := range []string{"dots-tls-ca", "dots-tls-server", "dots-tls-controller"} {
		if fmt.Sprint(dig(first.get(t, "Secret", name), "data")) == fmt.Sprint(dig(again.get(t, "Secret", name), "data")) {
			t.Errorf("Secret %s kept although its CA is gone", name)
		}
	}
}

// attachRequired cannot change on an existing CSIDriver: the chart says how
// to switch instead of letting the API server refuse the upgrade.
func TestCSIDriverAttachRequiredImmutable(t *testing.T) {
	for _, tc := range []struct {
		live    bool
		flags   []string
		wantErr bool
	}{
		{live: false, wantErr: true},
		{live: false, flags: []string{"--set", "exports.perNode=false"}},
		{live: true},
		{live: true, flags: []string{"--set", "exports.perNode=false"}, wantErr: true},
	} {
		fc, kubeconfig := newFakeCluster(t)
		fc.addCSIDriver(tc.live)
		_, err := renderUpgrade(t, kubeconfig, tc.flags...)
		if tc.wantErr != (err != nil) || (err != nil && !strings.Contains(err.Error(), "kubectl delete csidriver dots.csi.dev")) {
			t.Errorf("live attachRequired=%v, %v: error %v, want error=%v naming the way out", tc.live, tc.flags, err, tc.wantErr)
		}
	}
}
