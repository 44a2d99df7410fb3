//go:build integration

package helm

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The controller fails servers over by default, naming exactly the server
// pods (the StatefulSet's selector) in its own namespace.
func TestServerFailoverFlags(t *testing.T) {
	ms := render(t)
	a := args(container(t, ms.get(t, "Deployment", "dots-controller"), "dots"))
	wantFlag(t, "dots", a, "server-failover-after", "30s")
	wantFlag(t, "dots", a, "server-failover-namespace", namespace)
	wantFlag(t, "dots", a, "server-failover-lease", "dots-controller-failover")
	sel, _ := flagValue(a, "server-failover-selector")
	got := map[string]any{}
	for _, kv := range strings.Split(sel, ",") {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	if want := dig(ms.get(t, "StatefulSet", "dots-server"), "spec", "selector", "matchLabels"); !reflect.DeepEqual(got, want) {
		t.Errorf("--server-failover-selector=%s selects %v, the StatefulSet's pods are %v", sel, got, want)
	}

	a = args(container(t, render(t, "--set", "controller.serverFailover.after=2m").get(t, "Deployment", "dots-controller"), "dots"))
	wantFlag(t, "dots", a, "server-failover-after", "2m")

	a = args(container(t, render(t, "--set", "controller.serverFailover.enabled=false").get(t, "Deployment", "dots-controller"), "dots"))
	for _, f := range a {
		if strings.HasPrefix(f, "--server-failover") {
			t.Errorf("failover disabled, yet %s", f)
		}
	}
	if _, err := renderErr(t, "--set", "controller.serverFailover.after=soon"); err == nil {
		t.Error("after=soon accepted")
	}
}

// failoverRBAC: reading nodes, deleting VolumeAttachments and (only in the
// release namespace) deleting pods are granted for failover and nothing
// else; with failover off, none of them.
func failoverRBAC(t *testing.T, ms manifests) {
	t.Helper()
	enabled := slices.ContainsFunc(args(container(t, ms.get(t, "Deployment", "dots-controller"), "dots")),
		func(a string) bool { return strings.HasPrefix(a, "--server-failover-selector=") })
	grants := map[string][]string{} // "Kind/resource" -> verbs, over all rules
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, r := range ms.all(kind) {
			rules, _ := r["rules"].([]any)
			for _, rule := range rules {
				for _, res := range toStrings(dig(rule, "resources")) {
					grants[kind+"/"+res] = append(grants[kind+"/"+res], toStrings(dig(rule, "verbs"))...)
				}
			}
		}
	}
	has := func(key, verb string) bool { return slices.Contains(grants[key], verb) }
	for _, verb := range grants["ClusterRole/nodes"] {
		if verb != "get" && verb != "list" && verb != "watch" {
			t.Errorf("nodes: %s granted; failover only reads them", verb)
		}
	}
	// Cluster-wide pod deletes are the restart of a moved volume's pods
	// (controller.restartPodsOnPromotion), never failover's.
	restart := slices.Contains(args(container(t, ms.get(t, "Deployment", "dots-controller"), "dots")), "--restart-pods-on-promotion")
	if has("ClusterRole/pods", "delete") != restart {
		t.Errorf("pods may be deleted cluster-wide: %v, restartPodsOnPromotion %v (failover deletes only the release's server pods)", has("ClusterRole/pods", "delete"), restart)
	}
	want := map[string][]string{
		"ClusterRole/nodes":             {"get", "list", "watch"},
		"ClusterRole/volumeattachments": {"list", "delete"},
		"Role/pods":                     {"get", "list", "watch", "delete"},
		"Role/persistentvolumeclaims":   {"get"},
		"Role/events":                   {"create", "patch"},
		"Role/leases":                   {"get", "create", "update"},
	}
	for key, verbs := range want {
		for _, v := range verbs {
			// Without failover, only what the sidecars already had remains.
			always := key == "Role/leases" || key == "ClusterRole/volumeattachments" && v == "list" && has("ClusterRole/volumeattachments", "patch")
			if has(key, v) != (enabled || always) {
				t.Errorf("failover enabled=%v: %s %s granted=%v", enabled, key, v, has(key, v))
			}
		}
	}
	if !enabled && has("ClusterRole/volumeattachments", "delete") {
		t.Error("VolumeAttachments may be deleted without failover")
	}
}

// An upgrade never takes two servers down at once: the StatefulSet rolls
// one pod at a time, counting servers already down (maxUnavailable, where
// Kubernetes honours it), and a drain evicts one server at a time (PDB).
func TestServerRollingUpgrade(t *testing.T) {
	for _, replicas := range []string{"2", "5"} {
		ms := render(t, "--set", "server.replicas="+replicas)
		sts := ms.get(t, "StatefulSet", "dots-server")
		if got := dig(sts, "spec", "updateStrategy", "type"); got != "RollingUpdate" {
			t.Errorf("replicas %s: updateStrategy %v", replicas, got)
		}
		if got := dig(sts, "spec", "updateStrategy", "rollingUpdate", "maxUnavailable"); got != 1 {
			t.Errorf("replicas %s: rollingUpdate.maxUnavailable %v, want 1", replicas, got)
		}
		if p := dig(sts, "spec", "updateStrategy", "rollingUpdate", "partition"); p != nil {
			t.Errorf("replicas %s: partition %v would leave servers on the old version", replicas, p)
		}
		pdb := ms.get(t, "PodDisruptionBudget", "dots-server")
		if dig(pdb, "spec", "maxUnavailable") != 1 || dig(pdb, "spec", "minAvailable") != nil ||
			!reflect.DeepEqual(dig(pdb, "spec", "selector"), dig(sts, "spec", "selector")) {
			t.Errorf("replicas %s: PodDisruptionBudget %v", replicas, dig(pdb, "spec"))
		}
	}
}
