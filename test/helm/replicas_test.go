//go:build integration

package helm

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The controller acts on Kubernetes objects for replicated volumes, finds
// orphaned pools of exactly the server StatefulSet, promotes nothing by
// itself and restarts no pod unless asked.
func TestReplicasFlags(t *testing.T) {
	ms := render(t)
	a := args(container(t, ms.get(t, "Deployment", "dots-controller"), "dots"))
	if !slices.Contains(a, "--kubernetes-workloads") {
		t.Errorf("no --kubernetes-workloads in %v", a)
	}
	wantFlag(t, "dots", a, "promote-after", "0s")
	wantFlag(t, "dots", a, "orphaned-pools-namespace", namespace)
	wantFlag(t, "dots", a, "orphaned-pools-lease", "dots-controller-orphans")
	sel, _ := flagValue(a, "orphaned-pools-selector")
	got := map[string]any{}
	for _, kv := range strings.Split(sel, ",") {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	sts := ms.get(t, "StatefulSet", "dots-server")
	for k, v := range got {
		if dig(sts, "metadata", "labels", k) != v {
			t.Errorf("--orphaned-pools-selector=%s: the StatefulSet's label %s is %v", sel, k, dig(sts, "metadata", "labels", k))
		}
	}
	if want := dig(sts, "spec", "selector", "matchLabels"); !reflect.DeepEqual(got, want) {
		t.Errorf("--orphaned-pools-selector=%s, the StatefulSet selects %v", sel, want)
	}
	if slices.Contains(a, "--restart-pods-on-promotion") {
		t.Error("pods restarted on promotion by default")
	}

	a = args(container(t, render(t, "--set", "controller.promoteAfter=5m", "--set", "controller.restartPodsOnPromotion=true").get(t, "Deployment", "dots-controller"), "dots"))
	wantFlag(t, "dots", a, "promote-after", "5m")
	if !slices.Contains(a, "--restart-pods-on-promotion") {
		t.Errorf("restartPodsOnPromotion=true, args %v", a)
	}
}

// replicasRBAC is what the "-replicas" roles grant, as sorted
// "resource:verb" pairs.
func replicasRBAC(t *testing.T, ms manifests, kind string) []string {
	t.Helper()
	var out []string
	for _, rule := range dig(ms.get(t, kind, "dots-controller-replicas"), "rules").([]any) {
		for _, res := range toStrings(dig(rule, "resources")) {
			for _, v := range toStrings(dig(rule, "verbs")) {
				out = append(out, res+":"+v)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Exactly what pkg/workloads calls, and pod deletes only when it may
// restart pods.
func TestReplicasRBAC(t *testing.T) {
	for _, restart := range []bool{false, true} {
		flags := []string{}
		want := []string{"events:create", "events:patch", "persistentvolumes:list", "pods:list"}
		if restart {
			flags = []string{"--set", "controller.restartPodsOnPromotion=true"}
			want = []string{"events:create", "events:patch", "persistentvolumes:list", "pods:delete", "pods:list"}
		}
		ms := render(t, flags...)
		if got := replicasRBAC(t, ms, "ClusterRole"); !reflect.DeepEqual(got, want) {
			t.Errorf("restart %v: ClusterRole grants %v, want %v", restart, got, want)
		}
		if got, want := replicasRBAC(t, ms, "Role"), []string{"persistentvolumeclaims:list", "statefulsets:list"}; !reflect.DeepEqual(got, want) {
			t.Errorf("restart %v: Role grants %v, want %v", restart, got, want)
		}
		if ns := dig(ms.get(t, "RoleBinding", "dots-controller-replicas"), "metadata", "namespace"); ns != namespace {
			t.Errorf("RoleBinding in %v", ns)
		}
	}
}

func TestReplicasStorageClass(t *testing.T) {
	values := writeValues(t, `
storageClasses:
  - name: replicated
    parameters: {replicas: 2, replicationInterval: 10s}
  - name: three
    parameters: {replicas: "3"}
`)
	ms := render(t, "-f", values)
	if got, want := ms.get(t, "StorageClass", "replicated")["parameters"], map[string]any{"replicas": "2", "replicationInterval": "10s"}; !reflect.DeepEqual(got, want) {
		t.Errorf("parameters %v, want %v", got, want)
	}
	if got := dig(ms.get(t, "StorageClass", "three"), "parameters", "replicas"); got != "3" {
		t.Errorf("replicas %v", got)
	}
	for name, tc := range map[string]struct {
		flags []string
		want  string
	}{
		"promoteAfter not a duration": {[]string{"--set", "controller.promoteAfter=soon"}, "promoteAfter"},
		"restart not a bool":          {[]string{"--set-string", "controller.restartPodsOnPromotion=maybe"}, "restartPodsOnPromotion"},
		"too many replicas":           {[]string{"--set", "storageClasses[0].name=x,storageClasses[0].parameters.replicas=6"}, "replicas"},
		"no replicas":                 {[]string{"--set-string", "storageClasses[0].name=x,storageClasses[0].parameters.replicas=0"}, "replicas"},
		"interval not a duration":     {[]string{"--set", "storageClasses[0].name=x,storageClasses[0].parameters.replicationInterval=ten"}, "replicationInterval"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderErr(t, tc.flags...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error mentioning %q, got %v", tc.want, err)
			}
		})
	}
}

// Each server reads its node's zone by default (a token and get on nodes,
// nothing more); a zone named in the values is passed as is, with no API
// access; and with neither, no zone and no token (events off).
func TestServerZone(t *testing.T) {
	ms := render(t)
	sts := ms.get(t, "StatefulSet", "dots-server")
	a := args(container(t, sts, "dots"))
	wantFlag(t, "dots", a, "zone-from-node", "$(NODE_NAME)")
	if _, ok := flagValue(a, "zone"); ok {
		t.Errorf("--zone without server.zone.name: %v", a)
	}
	var rules []string
	for _, rule := range dig(ms.get(t, "ClusterRole", "dots-server-nodes"), "rules").([]any) {
		for _, res := range toStrings(dig(rule, "resources")) {
			for _, v := range toStrings(dig(rule, "verbs")) {
				rules = append(rules, res+":"+v)
			}
		}
	}
	if !reflect.DeepEqual(rules, []string{"nodes:get"}) {
		t.Errorf("the servers' ClusterRole grants %v", rules)
	}
	b := ms.get(t, "ClusterRoleBinding", "dots-server-nodes")
	if dig(b, "roleRef", "name") != "dots-server-nodes" || dig(b, "subjects", 0, "name") != dig(sts, "spec", "template", "spec", "serviceAccountName") {
		t.Errorf("binding %v", b)
	}

	ms = render(t, "--set", "server.zone.name=zone-a", "--set", "server.events.enabled=false")
	sts = ms.get(t, "StatefulSet", "dots-server")
	a = args(container(t, sts, "dots"))
	wantFlag(t, "dots", a, "zone", "zone-a")
	if _, ok := flagValue(a, "zone-from-node"); ok {
		t.Errorf("--zone-from-node with a named zone: %v", a)
	}
	if len(ms.without("ClusterRole", "dots-server-nodes")) != len(ms) || dig(sts, "spec", "template", "spec", "automountServiceAccountToken") != false {
		t.Errorf("a named zone still reads nodes (token %v)", dig(sts, "spec", "template", "spec", "automountServiceAccountToken"))
	}
	if _, err := renderErr(t, "--set", "server.zone.name=not a zone"); err == nil {
		t.Error("server.zone.name=\"not a zone\" rendered")
	}
}
