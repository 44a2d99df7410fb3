//go:build integration

package helm

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// workloads are the chart's three workloads, by component.
var workloads = map[string]struct{ kind, name string }{
	"controller": {"Deployment", "dots-controller"},
	"node":       {"DaemonSet", "dots-node"},
	"server":     {"StatefulSet", "dots-server"},
}

// images lists every container image of a rendering, by container name.
func images(t *testing.T, ms manifests) map[string]string {
	t.Helper()
	out := map[string]string{}
	for component, w := range workloads {
		cs, _ := dig(ms.get(t, w.kind, w.name), "spec", "template", "spec", "containers").([]any)
		for _, c := range cs {
			out[component+"/"+fmt.Sprint(dig(c, "name"))] = fmt.Sprint(dig(c, "image"))
		}
	}
	return out
}

func TestImages(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	def := images(t, render(t, snapshotAPI...))
	for c, want := range map[string]string{
		"controller/dots":            "dots-csi/dots:0.1.0",
		"node/dots":                  "dots-csi/dots:0.1.0",
		"server/dots":                "dots-csi/dots:0.1.0",
		"controller/csi-provisioner": "registry.k8s.io/sig-storage/csi-provisioner:v5.3.0",
		"controller/csi-snapshotter": "registry.k8s.io/sig-storage/csi-snapshotter:v8.7.0",
		"node/node-driver-registrar": "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.15.0",
	} {
		if def[c] != want {
			t.Errorf("default image of %s: %q, want %q", c, def[c], want)
		}
	}

	// A mirror for every image, the dots image pinned by digest, the
	// server's own tag and pull policy, a sidecar pinned by digest, a
	// sidecar given as a string (charts before 0.2.0).
	ms := render(t, append(snapshotAPI, "--set", "global.imageRegistry=mirror.example.com:5000,image.digest="+digest,
		"--set", "server.image.repository=corp/dots-server,server.image.tag=1.2.3,server.image.pullPolicy=Always",
		"--set", "sidecars.resizer.image.digest="+digest,
		"--set", "sidecars.attacher.image=quay.io/corp/csi-attacher:v4.12.0")...)
	got := images(t, ms)
	for c, want := range map[string]string{
		"controller/dots":            "mirror.example.com:5000/dots-csi/dots@" + digest,
		"node/dots":                  "mirror.example.com:5000/dots-csi/dots@" + digest,
		"server/dots":                "mirror.example.com:5000/corp/dots-server:1.2.3",
		"controller/csi-provisioner": "mirror.example.com:5000/sig-storage/csi-provisioner:v5.3.0",
		"controller/csi-resizer":     "mirror.example.com:5000/sig-storage/csi-resizer@" + digest,
		"controller/csi-attacher":    "quay.io/corp/csi-attacher:v4.12.0",
		"node/liveness-probe":        "mirror.example.com:5000/sig-storage/livenessprobe:v2.17.0",
	} {
		if got[c] != want {
			t.Errorf("image of %s: %q, want %q", c, got[c], want)
		}
	}
	for component, want := range map[string]string{"controller": "IfNotPresent", "server": "Always"} {
		w := workloads[component]
		if p := container(t, ms.get(t, w.kind, w.name), "dots")["imagePullPolicy"]; p != want {
			t.Errorf("%s pull policy %v, want %s", component, p, want)
		}
	}
	// The component's registry, without a global one.
	if got := images(t, render(t, "--set", "node.image.registry=registry.example.com"))["node/dots"]; got != "registry.example.com/dots-csi/dots:0.1.0" {
		t.Errorf("node image with its own registry: %q", got)
	}

	// Pull secrets from both places, names or objects.
	ms = render(t, "--set", "global.imagePullSecrets={a}", "--set-json", `imagePullSecrets=[{"name":"b"}]`)
	for component, w := range workloads {
		if got := dig(ms.get(t, w.kind, w.name), "spec", "template", "spec", "imagePullSecrets"); !reflect.DeepEqual(got,
			[]any{map[string]any{"name": "a"}, map[string]any{"name": "b"}}) {
			t.Errorf("%s imagePullSecrets %v", component, got)
		}
	}

	for name, flags := range map[string][]string{
		"short digest":         {"--set", "image.digest=sha256:abc"},
		"digest without algo":  {"--set", "image.digest=0123"},
		"registry with a path": {"--set", "global.imageRegistry=mirror.example.com/x"},
		"unknown image key":    {"--set", "controller.image.tagg=1"},
		"sidecar without tag":  {"--set", "sidecars.resizer.image.tag="},
	} {
		if _, err := renderErr(t, flags...); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// Each sidecar may have its own resources; the others keep sidecars.resources.
func TestSidecarResources(t *testing.T) {
	ms := render(t, "--set", "sidecars.provisioner.resources.requests.cpu=100m,sidecars.nodeDriverRegistrar.resources.limits.memory=64Mi")
	d, ds := ms.get(t, "Deployment", "dots-controller"), ms.get(t, "DaemonSet", "dots-node")
	if got := container(t, d, "csi-provisioner")["resources"]; !reflect.DeepEqual(got, map[string]any{"requests": map[string]any{"cpu": "100m"}}) {
		t.Errorf("provisioner resources %v", got)
	}
	if got := container(t, ds, "node-driver-registrar")["resources"]; !reflect.DeepEqual(got, map[string]any{"limits": map[string]any{"memory": "64Mi"}}) {
		t.Errorf("registrar resources %v", got)
	}
	shared := map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "32Mi"}, "limits": map[string]any{"memory": "256Mi"}}
	for _, c := range []struct {
		w    obj
		name string
	}{{d, "csi-resizer"}, {d, "liveness-probe"}, {ds, "liveness-probe"}} {
		if got := container(t, c.w, c.name)["resources"]; !reflect.DeepEqual(got, shared) {
			t.Errorf("%s resources %v, want sidecars.resources", c.name, got)
		}
	}
}

// Servers run only on labelled storage nodes by default; the label can
// be replaced or removed.
func TestServerNodeSelector(t *testing.T) {
	sel := func(flags ...string) any {
		return dig(render(t, flags...).get(t, "StatefulSet", "dots-server"), "spec", "template", "spec", "nodeSelector")
	}
	if got := sel(); !reflect.DeepEqual(got, map[string]any{"dots.csi.dev/storage-node": "true"}) {
		t.Errorf("default server nodeSelector %v", got)
	}
	if got := sel("--set", "server.nodeSelector=null"); got != nil {
		t.Errorf("nodeSelector=null: %v, want none", got)
	}
	if got := sel("--set", `server.nodeSelector.dots\.csi\.dev/storage-node=null,server.nodeSelector.zfs=yes`); !reflect.DeepEqual(got, map[string]any{"zfs": "yes"}) {
		t.Errorf("replaced label: %v", got)
	}
	// Nothing else is confined by default.
	ms := render(t)
	for _, c := range []string{"controller", "node"} {
		if got := dig(ms.get(t, workloads[c].kind, workloads[c].name), "spec", "template", "spec", "nodeSelector"); got != nil {
			t.Errorf("%s nodeSelector %v", c, got)
		}
	}
}

// No priority class by default (GKE refuses the system-* classes outside
// kube-system); each component takes one.
func TestPriorityClasses(t *testing.T) {
	ms := render(t)
	for c, w := range workloads {
		if got := dig(ms.get(t, w.kind, w.name), "spec", "template", "spec", "priorityClassName"); got != nil {
			t.Errorf("%s priorityClassName %v, want none", c, got)
		}
	}
	ms = render(t, "--set", "controller.priorityClassName=system-cluster-critical,node.priorityClassName=system-node-critical,server.priorityClassName=dots-storage")
	for c, want := range map[string]string{"controller": "system-cluster-critical", "node": "system-node-critical", "server": "dots-storage"} {
		w := workloads[c]
		if got := dig(ms.get(t, w.kind, w.name), "spec", "template", "spec", "priorityClassName"); got != want {
			t.Errorf("%s priorityClassName %v, want %s", c, got, want)
		}
	}
}

// A PodDisruptionBudget for the controller when it has standbys.
func TestControllerPDB(t *testing.T) {
	if pdbs := render(t).all("PodDisruptionBudget"); len(pdbs) != 1 || pdbs[0].name() != "dots-server" {
		t.Errorf("one controller replica: PDBs %v, want the servers' only", pdbs)
	}
	ms := render(t, "--set", "controller.replicas=2")
	pdb := ms.get(t, "PodDisruptionBudget", "dots-controller")
	d := ms.get(t, "Deployment", "dots-controller")
	if dig(pdb, "spec", "maxUnavailable") != 1 || !reflect.DeepEqual(dig(pdb, "spec", "selector"), dig(d, "spec", "selector")) {
		t.Errorf("controller PDB %v", dig(pdb, "spec"))
	}
	if len(render(t, "--set", "controller.replicas=3,controller.podDisruptionBudget.enabled=false").all("PodDisruptionBudget")) != 1 {
		t.Error("controller PDB rendered although disabled")
	}
}

// podLabels, podAnnotations, extraArgs, extraEnv and spreading, per
// component; the chart's selector labels cannot be overridden.
func TestPodExtras(t *testing.T) {
	var flags []string
	for c := range workloads {
		flags = append(flags, "--set", fmt.Sprintf("%[1]s.podLabels.team=storage,%[1]s.podLabels.app\\.kubernetes\\.io/component=x,%[1]s.podAnnotations.note=%[1]s", c),
			"--set-json", fmt.Sprintf(`%s.extraArgs=["--v=5"]`, c),
			"--set-json", fmt.Sprintf(`%s.extraEnv=[{"name":"GODEBUG","value":"x=1"}]`, c))
	}
	flags = append(flags, "--set-json", `controller.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"ScheduleAnyway"}]`,
		"--set-json", `server.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"own":"yes"}}}]`)
	ms := render(t, flags...)
	for c, w := range workloads {
		wl := ms.get(t, w.kind, w.name)
		labels, _ := dig(wl, "spec", "template", "metadata", "labels").(map[string]any)
		if labels["team"] != "storage" || labels["app.kubernetes.io/component"] != c {
			t.Errorf("%s pod labels %v", c, labels)
		}
		if dig(wl, "spec", "template", "metadata", "annotations", "note") != c {
			t.Errorf("%s pod annotations %v", c, dig(wl, "spec", "template", "metadata", "annotations"))
		}
		dots := container(t, wl, "dots")
		if a := args(dots); a[len(a)-1] != "--v=5" {
			t.Errorf("%s args end with %q, want the extra --v=5", c, a[len(a)-1])
		}
		envs, _ := dots["env"].([]any)
		if !slices.ContainsFunc(envs, func(e any) bool { return dig(e, "name") == "GODEBUG" && dig(e, "value") == "x=1" }) {
			t.Errorf("%s env %v", c, envs)
		}
	}
	spread := dig(ms.get(t, "Deployment", "dots-controller"), "spec", "template", "spec", "topologySpreadConstraints", 0)
	if !reflect.DeepEqual(dig(spread, "labelSelector", "matchLabels"), dig(ms.get(t, "Deployment", "dots-controller"), "spec", "selector", "matchLabels")) {
		t.Errorf("controller spreading without a selector gets the pods' labels: %v", spread)
	}
	spread = dig(ms.get(t, "StatefulSet", "dots-server"), "spec", "template", "spec", "topologySpreadConstraints", 0)
	if !reflect.DeepEqual(dig(spread, "labelSelector", "matchLabels"), map[string]any{"own": "yes"}) || dig(spread, "whenUnsatisfiable") != "DoNotSchedule" {
		t.Errorf("server spreading with its own selector: %v", spread)
	}
	for name, f := range map[string][]string{
		"extraArgs not flags":    {"--set-json", `server.extraArgs=["; rm -rf /"]`},
		"extraEnv without name":  {"--set-json", `node.extraEnv=[{"value":"x"}]`},
		"spread without maxSkew": {"--set-json", `server.topologySpreadConstraints=[{"topologyKey":"zone","whenUnsatisfiable":"DoNotSchedule"}]`},
		"label not a string":     {"--set-json", `controller.podLabels={"a":1}`},
	} {
		if _, err := renderErr(t, f...); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// The chart makes the three accounts, or uses the ones named; its RBAC
// binds whichever it is.
func TestServiceAccounts(t *testing.T) {
	check := func(ms manifests, names map[string]string) {
		t.Helper()
		for c, w := range workloads {
			if got := dig(ms.get(t, w.kind, w.name), "spec", "template", "spec", "serviceAccountName"); got != names[c] {
				t.Errorf("%s runs as %v, want %s", c, got, names[c])
			}
		}
		for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
			for _, b := range ms.all(kind) {
				subject := fmt.Sprint(dig(b, "subjects", 0, "name"))
				if subject != names["controller"] && subject != names["server"] {
					t.Errorf("%s %s binds %s, none of the accounts %v", kind, b.name(), subject, names)
				}
				if strings.HasPrefix(b.name(), "dots-server") != (subject == names["server"]) {
					t.Errorf("%s %s binds %s", kind, b.name(), subject)
				}
			}
		}
	}
	ms := render(t)
	check(ms, map[string]string{"controller": "dots-controller", "node": "dots-node", "server": "dots-server"})
	if len(ms.all("ServiceAccount")) != 3 {
		t.Errorf("%d ServiceAccounts, want 3", len(ms.all("ServiceAccount")))
	}
	ms = render(t, "--set", "serviceAccount.create=false,serviceAccount.name=ctl,serviceAccount.nodeName=nd,serviceAccount.serverName=srv")
	check(ms, map[string]string{"controller": "ctl", "node": "nd", "server": "srv"})
	if sas := ms.all("ServiceAccount"); len(sas) != 0 {
		t.Errorf("serviceAccount.create=false still makes %d accounts", len(sas))
	}
	ms = render(t, "--set", "serviceAccount.name=ctl,serviceAccount.annotations.role=x")
	if sa := ms.get(t, "ServiceAccount", "ctl"); dig(sa, "metadata", "annotations", "role") != "x" {
		t.Errorf("controller account %v", sa["metadata"])
	}
}

// A server that refuses to start says why in an Event on its pod: it gets
// its pod's name, namespace and UID, a token, and a Role that may create
// events and nothing else. Without server.events: none of that but the
// downward API and the termination message.
func TestServerEvents(t *testing.T) {
	ms := render(t)
	sts := ms.get(t, "StatefulSet", "dots-server")
	c := container(t, sts, "dots")
	wantFlag(t, "server", args(c), "zfs-module-check", "true")
	if c["terminationMessagePolicy"] != "FallbackToLogsOnError" {
		t.Errorf("terminationMessagePolicy %v", c["terminationMessagePolicy"])
	}
	envs, _ := c["env"].([]any)
	for name, field := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_UID": "metadata.uid"} {
		if !slices.ContainsFunc(envs, func(e any) bool {
			return dig(e, "name") == name && dig(e, "valueFrom", "fieldRef", "fieldPath") == field
		}) {
			t.Errorf("env %s from %s missing: %v", name, field, envs)
		}
	}
	if dig(sts, "spec", "template", "spec", "automountServiceAccountToken") != true {
		t.Error("the server pod gets no token for its Event")
	}
	role := ms.get(t, "Role", "dots-server-events")
	if !reflect.DeepEqual(role["rules"], []any{map[string]any{"apiGroups": []any{""}, "resources": []any{"events"}, "verbs": []any{"create"}}}) {
		t.Errorf("server Role %v, want events create only", role["rules"])
	}
	rb := ms.get(t, "RoleBinding", "dots-server-events")
	if dig(rb, "subjects", 0, "name") != "dots-server" || dig(rb, "roleRef", "name") != "dots-server-events" || dig(rb, "subjects", 1) != nil {
		t.Errorf("server RoleBinding %v", rb)
	}
	// Nothing else is bound to the servers' account (but reading their
	// node's zone: TestServerZone).
	for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
		for _, b := range ms.all(kind) {
			if dig(b, "subjects", 0, "name") == "dots-server" && b.name() != "dots-server-events" && b.name() != "dots-server-nodes" {
				t.Errorf("%s %s binds the servers' account", kind, b.name())
			}
		}
	}

	ms = render(t, "--set", "server.events.enabled=false,server.zfsModuleCheck=false,server.zone.fromNode=false")
	sts = ms.get(t, "StatefulSet", "dots-server")
	wantFlag(t, "server", args(container(t, sts, "dots")), "zfs-module-check", "false")
	if dig(sts, "spec", "template", "spec", "automountServiceAccountToken") != false {
		t.Error("server.events.enabled=false still mounts a token")
	}
	for _, r := range ms.all("Role") {
		if r.name() == "dots-server-events" {
			t.Error("server.events.enabled=false still renders the Role")
		}
	}
}

// Keys the chart does not know are refused inside its own sections; at the
// top level (an umbrella chart's keys) they are accepted and named in
// NOTES; global is the umbrella's, with dots' keys checked.
func TestSchemaUmbrellaKeys(t *testing.T) {
	if _, err := renderErr(t, "--set", "global.storageClass=gp3,global.imageRegistry=r.example.com,enabled=true,serverz.replicas=1"); err != nil {
		t.Fatalf("global and top-level keys of an umbrella chart refused: %v", err)
	}
	notes := renderNotes(t, "--set", "enabled=true,serverz.replicas=1,imagePullSecret=x")
	if !strings.Contains(notes, "Values this chart does not know, ignored (a typo?): imagePullSecret, serverz.") {
		t.Errorf("NOTES does not name the unknown keys (enabled is an umbrella's condition):\n%s", notes)
	}
	if notes := renderNotes(t, "--set", "enabled=true"); strings.Contains(notes, "does not know") {
		t.Errorf("NOTES names the umbrella's condition key:\n%s", notes)
	}
	for name, f := range map[string][]string{
		"server":          {"--set", "server.replicaz=1"},
		"controller":      {"--set", "controller.replica=2"},
		"sidecar":         {"--set", "sidecars.provisioner.imagee=x"},
		"snapshots":       {"--set", "snapshots.enable=true"},
		"serviceAccount":  {"--set", "serviceAccount.nme=x"},
		"server.events":   {"--set", "server.events.enable=false"},
		"global registry": {"--set-json", `global.imageRegistry=3`},
	} {
		if _, err := renderErr(t, f...); err == nil {
			t.Errorf("%s: unknown or mistyped key accepted", name)
		}
	}
	// The list NOTES checks against is the chart's own top-level keys.
	out, err := runHelm(t, "show", "values", chartDir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := decodeManifests(out)
	if err != nil || len(keys) != 1 {
		t.Fatalf("values.yaml: %v", err)
	}
	notesKnown := renderNotes(t, "--set-json", "x=1")
	for k := range keys[0] {
		if strings.Contains(notesKnown, "does not know, ignored (a typo?): ") && strings.Contains(strings.SplitAfter(notesKnown, "(a typo?): ")[1], k+".") {
			t.Errorf("NOTES calls values.yaml's own key %q unknown", k)
		}
	}
}

// Node and pod CIDRs are both NFS clients: each node reports its interface
// addresses inside them (tunnel and bridge addresses on overlays), and the
// network policy admits them all.
func TestNFSClientCIDRs(t *testing.T) {
	const clients = "server.nfs.clients={10.0.0.0/16,10.244.0.0/16}"
	ms := render(t, "--set", clients)
	got, ok := flagValue(args(container(t, ms.get(t, "DaemonSet", "dots-node"), "dots")), "node-address-cidrs")
	if !ok || got != "10.0.0.0/16,10.244.0.0/16" {
		t.Errorf("node --node-address-cidrs = %q (%v), want both CIDRs", got, ok)
	}
	pol := fmt.Sprint(dig(ms.get(t, "NetworkPolicy", "dots-server"), "spec", "ingress"))
	for _, c := range []string{"10.0.0.0/16", "10.244.0.0/16"} {
		if !strings.Contains(pol, c) {
			t.Errorf("network policy does not admit %s: %s", c, pol)
		}
	}
	// Without per-node exports every export admits the CIDRs already.
	ms = render(t, "--set", clients, "--set", "exports.perNode=false")
	if got, ok := flagValue(args(container(t, ms.get(t, "DaemonSet", "dots-node"), "dots")), "node-address-cidrs"); ok {
		t.Errorf("perNode=false: --node-address-cidrs=%q, want none", got)
	}
}
