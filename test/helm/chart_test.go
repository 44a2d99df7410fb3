//go:build integration

package helm

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	for name, flags := range map[string][]string{
		"defaults":                      nil,
		"filesystem":                    {"--set", "server.storage.volumeMode=Filesystem,server.storage.poolFileSize=950Gi"},
		"static":                        {"--set", "discovery.mode=static", "--set-json", `discovery.servers=[{"name":"ext-0","apiAddress":"10.1.2.3:7070","nfsAddress":"10.1.2.3"}]`},
		"clients exports, cert-manager": {"--set", "exports.perNode=false,tls.certManager.enabled=true"},
		"cert-manager issuer":           {"--set", "tls.certManager.enabled=true,tls.certManager.issuerRef.name=corp,tls.certManager.issuerRef.kind=ClusterIssuer"},
		"existing secrets":              {"--set", "tls.existingSecrets.server=s,tls.existingSecrets.controller=c"},
		"snapshots, mirror, digest, standby": {"--set", "snapshots.enabled=true,global.imageRegistry=mirror.example.com,controller.replicas=2," +
			"image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef,server.nodeSelector=null,serviceAccount.create=false"},
	} {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"lint", "--strict", chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, requiredValues...)
			args = append(args, flags...)
			if out, err := runHelm(t, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

func TestCSIDriver(t *testing.T) {
	// Attach (ControllerPublish) goes with per-node exports, the default.
	for perNode, attach := range map[string]bool{"": true, "true": true, "false": false} {
		var flags []string
		if perNode != "" {
			flags = []string{"--set", "exports.perNode=" + perNode}
		}
		d := render(t, flags...).get(t, "CSIDriver", "dots.csi.dev")
		for path, want := range map[string]any{
			"attachRequired": attach, "podInfoOnMount": false, "fsGroupPolicy": "File",
		} {
			if got := dig(d, "spec", path); got != want {
				t.Errorf("exports.perNode=%q: CSIDriver spec.%s = %v, want %v", perNode, path, got, want)
			}
		}
	}
}

func TestControllerDeployment(t *testing.T) {
	ms := render(t, snapshotAPI...)
	d := ms.get(t, "Deployment", "dots-controller")
	dots := args(container(t, d, "dots"))
	if dots[0] != "controller" {
		t.Errorf("controller subcommand: %q", dots)
	}
	wantFlag(t, "dots", dots, "endpoint", "unix:///csi/csi.sock")
	// The SRV record of the headless Service's "api" port, and the domain
	// of the per-pod Services: both must match what the chart renders.
	wantFlag(t, "dots", dots, "discover-dns", "srv=_api._tcp.dots-server."+namespace+".svc.cluster.local,nfs-domain="+namespace+".svc.cluster.local")
	wantFlag(t, "dots", dots, "http-address", ":8081")
	wantFlag(t, "dots", dots, "default-volume-size", "1Gi")
	wantFlag(t, "dots", dots, "placements", "kubernetes:"+namespace)
	// Its placements are Leases in its namespace, which its Role allows.
	role := ms.get(t, "Role", "dots-controller-leader-election")
	if dig(role, "rules", 0, "resources", 0) != "leases" || !slices.Contains(toStrings(dig(role, "rules", 0, "verbs")), "create") ||
		!slices.Contains(toStrings(dig(role, "rules", 0, "verbs")), "delete") {
		t.Errorf("the controller may not create and delete Leases: %v", dig(role, "rules"))
	}

	prov := args(container(t, d, "csi-provisioner"))
	wantFlag(t, "provisioner", prov, "extra-create-metadata", "")
	wantFlag(t, "provisioner", prov, "leader-election", "")
	wantFlag(t, "provisioner", prov, "leader-election-namespace", namespace)
	wantFlag(t, "provisioner", prov, "timeout", "60s")
	for _, side := range []string{"csi-provisioner", "csi-snapshotter", "csi-resizer", "liveness-probe"} {
		wantFlag(t, side, args(container(t, d, side)), "csi-address", "/csi/csi.sock")
	}
	wantFlag(t, "snapshotter", args(container(t, d, "csi-snapshotter")), "feature-gates", "CSIVolumeGroupSnapshot=false")
	for _, side := range []string{"csi-snapshotter", "csi-resizer"} {
		wantFlag(t, side, args(container(t, d, side)), "leader-election", "")
	}
	if dig(container(t, d, "dots"), "livenessProbe", "httpGet", "port") != "healthz" {
		t.Error("controller liveness must use the livenessprobe sidecar's port")
	}

	// The Deployment's account is the one the RBAC binds.
	sa := dig(d, "spec", "template", "spec", "serviceAccountName")
	crb := ms.get(t, "ClusterRoleBinding", "dots-controller")
	if dig(crb, "subjects", 0, "name") != sa || dig(crb, "subjects", 0, "namespace") != namespace {
		t.Errorf("ClusterRoleBinding subject %v does not match serviceAccountName %v", dig(crb, "subjects"), sa)
	}
	ms.get(t, "ServiceAccount", fmt.Sprint(sa))
}

func TestNodeDaemonSet(t *testing.T) {
	for _, kubelet := range []string{"/var/lib/kubelet", "/var/lib/k0s/kubelet"} {
		t.Run(kubelet, func(t *testing.T) {
			ds := render(t, "--set", "kubeletDir="+kubelet).get(t, "DaemonSet", "dots-node")
			spec := dig(ds, "spec", "template", "spec").(map[string]any)
			if spec["hostNetwork"] != true || spec["dnsPolicy"] != "ClusterFirstWithHostNet" {
				t.Errorf("hostNetwork=%v dnsPolicy=%v", spec["hostNetwork"], spec["dnsPolicy"])
			}
			if spec["priorityClassName"] != nil {
				t.Errorf("priorityClassName=%v, want none by default", spec["priorityClassName"])
			}
			if !reflect.DeepEqual(spec["tolerations"], []any{map[string]any{"operator": "Exists"}}) {
				t.Errorf("must tolerate every taint: %v", spec["tolerations"])
			}
			c := container(t, ds, "dots")
			a := args(c)
			if a[0] != "node" {
				t.Errorf("node subcommand: %q", a)
			}
			wantFlag(t, "node", a, "node-id", "$(NODE_NAME)")
			wantFlag(t, "node", a, "mount-mode", "nfs")
			// The controller's discovery: volumes that moved off every server their PV lists.
			wantFlag(t, "node", a, "discover-dns", "srv=_api._tcp.dots-server."+namespace+".svc.cluster.local,nfs-domain="+namespace+".svc.cluster.local")
			// The node refuses staging and target paths outside it.
			wantFlag(t, "node", a, "kubelet-dir", kubelet)
			if dig(c, "securityContext", "privileged") != true {
				t.Error("node plugin must be privileged to mount")
			}
			mounts, _ := c["volumeMounts"].([]any)
			found := false
			for _, m := range mounts {
				if dig(m, "mountPath") == kubelet {
					found = true
					if dig(m, "mountPropagation") != "Bidirectional" {
						t.Errorf("kubelet dir mount propagation %v", dig(m, "mountPropagation"))
					}
				}
			}
			if !found {
				t.Errorf("kubelet dir %s not mounted: %v", kubelet, mounts)
			}
			reg := args(container(t, ds, "node-driver-registrar"))
			wantFlag(t, "registrar", reg, "kubelet-registration-path", kubelet+"/plugins/dots.csi.dev/csi.sock")
			vols, _ := spec["volumes"].([]any)
			paths := []string{}
			for _, v := range vols {
				if p, ok := dig(v, "hostPath", "path").(string); ok {
					paths = append(paths, p)
				}
			}
			for _, want := range []string{kubelet, kubelet + "/plugins_registry", kubelet + "/plugins/dots.csi.dev"} {
				if !slices.Contains(paths, want) {
					t.Errorf("hostPath %s missing: %v", want, paths)
				}
			}
		})
	}
}

// The node plugin takes only a clean kubelet dir: a trailing slash in the
// value must not keep it from starting.
func TestNodeKubeletDirTrailingSlash(t *testing.T) {
	ds := render(t, "--set", "kubeletDir=/var/lib/k0s/kubelet/").get(t, "DaemonSet", "dots-node")
	wantFlag(t, "node", args(container(t, ds, "dots")), "kubelet-dir", "/var/lib/k0s/kubelet")
}

func TestServerStatefulSet(t *testing.T) {
	ms := render(t, "--set", "server.replicas=3,server.maxReplicas=5,server.storage.size=2Ti,server.storage.storageClassName=gp3")
	sts := ms.get(t, "StatefulSet", "dots-server")
	if dig(sts, "spec", "replicas") != 3 {
		t.Errorf("replicas %v", dig(sts, "spec", "replicas"))
	}
	c := container(t, sts, "dots")
	a := args(c)
	if a[0] != "server" {
		t.Errorf("server subcommand: %q", a)
	}
	for flag, want := range map[string]string{
		"name": "$(POD_NAME)", "pool": "$(POD_NAME)", "vdev": "/dev/dots-vdev", "endpoint": "tcp://0.0.0.0:7070",
		"nfs-port": "2049", "nfs-protocols": "4", "nfs-minor-versions": "1,2", "zfs-cli": "openzfs",
		"http-address": ":8080", "create-pool": "",
		"zfs-timeout": "5m", "zfs-short-timeout": "1m", "zfs-stuck-after": "1m",
	} {
		wantFlag(t, "server", a, flag, want)
	}
	if _, ok := flagValue(a, "pool-file-size"); ok {
		t.Error("block mode must not pass --pool-file-size")
	}
	if dig(c, "securityContext", "privileged") != true {
		t.Error("server must be privileged for ZFS")
	}
	if dig(c, "readinessProbe", "httpGet", "path") != "/readyz" {
		t.Errorf("readiness %v", dig(c, "readinessProbe"))
	}
	if dig(c, "volumeDevices", 0, "devicePath") != "/dev/dots-vdev" || dig(c, "volumeDevices", 0, "name") != "pool" {
		t.Errorf("volumeDevices %v", dig(c, "volumeDevices"))
	}
	vct := dig(sts, "spec", "volumeClaimTemplates", 0, "spec")
	if dig(vct, "volumeMode") != "Block" || dig(vct, "storageClassName") != "gp3" || dig(vct, "resources", "requests", "storage") != "2Ti" {
		t.Errorf("volumeClaimTemplate %v", vct)
	}
	term := dig(sts, "spec", "template", "spec", "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", 0)
	if dig(term, "topologyKey") != "kubernetes.io/hostname" ||
		!reflect.DeepEqual(dig(term, "labelSelector", "matchLabels"), dig(sts, "spec", "selector", "matchLabels")) {
		t.Errorf("anti-affinity term %v", term)
	}

	// The headless Service governs the StatefulSet and publishes the SRV
	// record (_api._tcp) that the controller's --discover-dns reads.
	svcName := dig(sts, "spec", "serviceName").(string)
	headless := ms.get(t, "Service", svcName)
	if dig(headless, "spec", "clusterIP") != "None" || dig(headless, "spec", "publishNotReadyAddresses") != true {
		t.Errorf("headless service spec %v", dig(headless, "spec"))
	}
	if dig(headless, "spec", "ports", 0, "name") != "api" || dig(headless, "spec", "ports", 0, "port") != 7070 {
		t.Errorf("headless service ports %v", dig(headless, "spec", "ports"))
	}

	// One ClusterIP Service per possible server pod: its ClusterIP is that
	// server's NFS address.
	for i := 0; i < 5; i++ {
		pod := fmt.Sprintf("dots-server-%d", i)
		s := ms.get(t, "Service", pod)
		if dig(s, "spec", "type") != "ClusterIP" || dig(s, "spec", "clusterIP") != nil {
			t.Errorf("%s: %v", pod, dig(s, "spec"))
		}
		if !reflect.DeepEqual(dig(s, "spec", "selector"), map[string]any{"statefulset.kubernetes.io/pod-name": pod}) {
			t.Errorf("%s selector %v", pod, dig(s, "spec", "selector"))
		}
		if dig(s, "spec", "ports", 0, "port") != 2049 || dig(s, "spec", "ports", 0, "targetPort") != "nfs" {
			t.Errorf("%s ports %v", pod, dig(s, "spec", "ports"))
		}
		if dig(s, "metadata", "annotations", "helm.sh/resource-policy") != "keep" {
			t.Errorf("%s must survive helm uninstall: its IP is in PVs", pod)
		}
		// A not-ready server (a slow zfs command) still serves NFS.
		if dig(s, "spec", "publishNotReadyAddresses") != true {
			t.Errorf("%s: NFS must reach a running server whatever its readiness", pod)
		}
	}
	for _, s := range ms.all("Service") {
		if s.name() == "dots-server-5" {
			t.Error("rendered a Service past maxReplicas")
		}
	}

	pdb := ms.get(t, "PodDisruptionBudget", "dots-server")
	if !reflect.DeepEqual(dig(pdb, "spec", "selector"), dig(sts, "spec", "selector")) || dig(pdb, "spec", "maxUnavailable") != 1 {
		t.Errorf("pdb %v", dig(pdb, "spec"))
	}
}

func TestServerFilesystemMode(t *testing.T) {
	sts := render(t, "--set", "server.storage.volumeMode=Filesystem,server.storage.poolFileSize=950Gi,server.antiAffinity=soft").
		get(t, "StatefulSet", "dots-server")
	c := container(t, sts, "dots")
	a := args(c)
	wantFlag(t, "server", a, "vdev", "/var/lib/dots/vdev/pool.img")
	wantFlag(t, "server", a, "pool-file-size", "950Gi")
	if c["volumeDevices"] != nil {
		t.Errorf("filesystem mode must not use volumeDevices: %v", c["volumeDevices"])
	}
	if dig(c, "volumeMounts", 0, "name") != "pool" || dig(c, "volumeMounts", 0, "mountPath") != "/var/lib/dots/vdev" {
		t.Errorf("pool mount %v", c["volumeMounts"])
	}
	if dig(sts, "spec", "volumeClaimTemplates", 0, "spec", "volumeMode") != "Filesystem" {
		t.Error("claim template volumeMode")
	}
	if dig(sts, "spec", "template", "spec", "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", 0, "weight") != 100 {
		t.Errorf("soft anti-affinity: %v", dig(sts, "spec", "template", "spec", "affinity"))
	}
}

func TestStaticDiscovery(t *testing.T) {
	servers := `[{"name":"ext-0","apiAddress":"10.1.2.3:7070","nfsAddress":"10.1.2.3","nfsPort":2050}]`
	ms := render(t, "--set", "discovery.mode=static", "--set-json", "discovery.servers="+servers)
	d := ms.get(t, "Deployment", "dots-controller")
	a := args(container(t, d, "dots"))
	// Its own directory: /etc/dots/tls is mounted beside it, and a mount
	// point inside a read-only ConfigMap volume cannot be created.
	wantFlag(t, "controller", a, "servers-file", "/etc/dots/servers/servers.json")
	if m := volumeMount(t, container(t, d, "dots"), "servers"); m["mountPath"] != "/etc/dots/servers" {
		t.Errorf("servers ConfigMap mounted at %v", m["mountPath"])
	}
	if _, ok := flagValue(a, "discover-dns"); ok {
		t.Error("static mode must not also discover by DNS")
	}
	ds := ms.get(t, "DaemonSet", "dots-node")
	na := args(container(t, ds, "dots"))
	wantFlag(t, "node", na, "servers-file", "/etc/dots/servers/servers.json")
	if m := volumeMount(t, container(t, ds, "dots"), "servers"); m["mountPath"] != "/etc/dots/servers" {
		t.Errorf("node: servers ConfigMap mounted at %v", m["mountPath"])
	}
	if _, ok := flagValue(na, "discover-dns"); ok {
		t.Error("node: static mode must not also discover by DNS")
	}
	cm := ms.get(t, "ConfigMap", "dots-controller-servers")
	var got, want any
	if err := json.Unmarshal([]byte(dig(cm, "data", "servers.json").(string)), &got); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal([]byte(servers), &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("servers.json %v, want %v", got, want)
	}
}

func TestStorageAndSnapshotClasses(t *testing.T) {
	values := writeValues(t, `
storageClasses:
  - name: fast
    default: true
    reclaimPolicy: Retain
    parameters: {compression: zstd, recordsize: 16K, atime: "off", sync: disabled, thick: "true", server: dots-server-1}
  - name: plain
volumeSnapshotClasses:
  - name: snaps
    deletionPolicy: Retain
`)
	ms := render(t, append([]string{"-f", values}, snapshotAPI...)...)
	fast := ms.get(t, "StorageClass", "fast")
	if fast["provisioner"] != "dots.csi.dev" || fast["reclaimPolicy"] != "Retain" || fast["allowVolumeExpansion"] != true ||
		fast["volumeBindingMode"] != "Immediate" || dig(fast, "metadata", "annotations", "storageclass.kubernetes.io/is-default-class") != "true" {
		t.Errorf("StorageClass fast: %v", fast)
	}
	wantParams := map[string]any{"compression": "zstd", "recordsize": "16K", "atime": "off", "sync": "disabled", "thick": "true", "server": "dots-server-1"}
	if !reflect.DeepEqual(fast["parameters"], wantParams) {
		t.Errorf("parameters %v", fast["parameters"])
	}
	plain := ms.get(t, "StorageClass", "plain")
	if plain["reclaimPolicy"] != "Delete" || plain["allowVolumeExpansion"] != true || dig(plain, "metadata", "annotations") != nil {
		t.Errorf("StorageClass plain defaults: %v", plain)
	}
	vsc := ms.get(t, "VolumeSnapshotClass", "snaps")
	if vsc["driver"] != "dots.csi.dev" || vsc["deletionPolicy"] != "Retain" {
		t.Errorf("VolumeSnapshotClass %v", vsc)
	}
}

func TestNetworkPolicy(t *testing.T) {
	ms := render(t)
	np := ms.get(t, "NetworkPolicy", "dots-server")
	sts := ms.get(t, "StatefulSet", "dots-server")
	if !reflect.DeepEqual(dig(np, "spec", "podSelector"), dig(sts, "spec", "selector")) {
		t.Errorf("policy selects %v, servers are %v", dig(np, "spec", "podSelector"), dig(sts, "spec", "selector"))
	}
	ctrlLabels := dig(ms.get(t, "Deployment", "dots-controller"), "spec", "template", "metadata", "labels")
	rules, _ := dig(np, "spec", "ingress").([]any)
	byPort := map[any]any{}
	for _, r := range rules {
		byPort[dig(r, "ports", 0, "port")] = r
	}
	api := byPort[7070]
	if api == nil || !reflect.DeepEqual(dig(api, "from", 0, "podSelector", "matchLabels"), ctrlLabels) || dig(api, "from", 1) != nil {
		t.Errorf("API must be reachable from the controller only: %v", api)
	}
	if nfs := byPort[2049]; nfs == nil {
		t.Errorf("no NFS rule: %v", rules)
	} else if got := dig(nfs, "from", 0, "ipBlock", "cidr"); got != "10.0.0.0/16" || dig(nfs, "from", 1) != nil {
		t.Errorf("NFS must be reachable from server.nfs.clients only (10.0.0.0/16), got %v", dig(nfs, "from"))
	}
	if len(render(t, "--set", "networkPolicy.enabled=false").all("NetworkPolicy")) != 0 {
		t.Error("networkPolicy.enabled=false still renders a policy")
	}
}

func TestRBACLeastPrivilege(t *testing.T) {
	for name, flags := range map[string][]string{
		"per-node exports (attacher)": nil,
		"clients exports":             {"--set", "exports.perNode=false"},
		"no server failover":          {"--set", "controller.serverFailover.enabled=false"},
		"restart pods on promotion":   {"--set", "controller.restartPodsOnPromotion=true"},
	} {
		t.Run(name, func(t *testing.T) { rbacLeastPrivilege(t, render(t, flags...)) })
	}
}

func rbacLeastPrivilege(t *testing.T, ms manifests) {
	t.Helper()
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, r := range ms.all(kind) {
			rules, _ := r["rules"].([]any)
			for _, rule := range rules {
				for _, field := range []string{"verbs", "resources", "apiGroups"} {
					for _, v := range dig(rule, field).([]any) {
						if v == "*" {
							t.Errorf("%s %s: wildcard in %s", kind, r.name(), field)
						}
						if field == "resources" && (v == "secrets" || v == "nodes/status") {
							t.Errorf("%s %s: needs no %s", kind, r.name(), v)
						}
					}
				}
			}
		}
	}
	// The servers' own Role (events, to say why one refuses to start) is
	// checked by TestServerEvents, their ClusterRole (their node's zone)
	// by TestServerZone: what failover adds is the controller's.
	failoverRBAC(t, ms.without("Role", "dots-server-events").without("ClusterRole", "dots-server-nodes"))
	// The node plugin and the servers get no token at all.
	for _, name := range []string{"dots-node", "dots-server"} {
		if dig(ms.get(t, "ServiceAccount", name), "automountServiceAccountToken") != false {
			t.Errorf("ServiceAccount %s mounts a token", name)
		}
	}
}

func TestServiceMonitor(t *testing.T) {
	if len(render(t).all("ServiceMonitor")) != 0 {
		t.Error("ServiceMonitor rendered by default")
	}
	ms := render(t, "--set", "metrics.serviceMonitor.enabled=true")
	sm := ms.get(t, "ServiceMonitor", "dots")
	sel := dig(sm, "spec", "selector", "matchLabels").(map[string]any)
	matched := 0
	for _, s := range ms.all("Service") {
		labels, _ := dig(s, "metadata", "labels").(map[string]any)
		ok := true
		for k, v := range sel {
			ok = ok && labels[k] == v
		}
		if ok {
			matched++
			if !slices.ContainsFunc(dig(s, "spec", "ports").([]any), func(p any) bool { return dig(p, "name") == "http-metrics" }) {
				t.Errorf("Service %s selected for metrics has no http-metrics port", s.name())
			}
		}
	}
	if matched != 3 {
		t.Errorf("ServiceMonitor selects %d Services, want controller, node and server", matched)
	}
}

// Every workload's selector must match its own pod labels, and every
// Service without a pod-name selector must select some workload's pods.
func TestSelectorsMatch(t *testing.T) {
	ms := render(t)
	var podLabels []map[string]any
	for _, kind := range []string{"Deployment", "DaemonSet", "StatefulSet"} {
		for _, w := range ms.all(kind) {
			sel := dig(w, "spec", "selector", "matchLabels").(map[string]any)
			labels := dig(w, "spec", "template", "metadata", "labels").(map[string]any)
			for k, v := range sel {
				if labels[k] != v {
					t.Errorf("%s %s: selector %s=%v not in pod labels", kind, w.name(), k, v)
				}
			}
			podLabels = append(podLabels, labels)
		}
	}
	for _, s := range ms.all("Service") {
		sel := dig(s, "spec", "selector").(map[string]any)
		if _, perPod := sel["statefulset.kubernetes.io/pod-name"]; perPod {
			continue
		}
		if !slices.ContainsFunc(podLabels, func(l map[string]any) bool {
			for k, v := range sel {
				if l[k] != v {
					return false
				}
			}
			return true
		}) {
			t.Errorf("Service %s selects no workload's pods: %v", s.name(), sel)
		}
	}
}

func TestInvalidValuesRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		flags []string
		want  string
	}{
		"replicas over maxReplicas": {[]string{"--set", "server.replicas=9"}, "exceeds server.maxReplicas"},
		"server name too long":      {[]string{"--set", "fullnameOverride=a-very-long-release-name"}, "fullnameOverride"},
		"file vdev without size":    {[]string{"--set", "server.storage.volumeMode=Filesystem"}, "poolFileSize"},
		"unknown sc parameter":      {[]string{"--set", "storageClasses[0].name=x,storageClasses[0].parameters.compresion=lz4"}, "compresion"},
		"bad thick value":           {[]string{"--set", "storageClasses[0].name=x,storageClasses[0].parameters.thick=yes"}, "thick"},
		"bad volumeMode":            {[]string{"--set", "server.storage.volumeMode=Raw"}, "volumeMode"},
		"static without servers":    {[]string{"--set", "discovery.mode=static"}, "discovery.servers"},
		"unknown key in server":     {[]string{"--set", "server.replicaz=1"}, "replicaz"},
		"no nfs clients":            {[]string{"--set", "server.nfs.clients=null"}, "server.nfs.clients is required"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderErr(t, tc.flags...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error mentioning %q, got %v", tc.want, err)
			}
		})
	}
	// A long release name makes server names (part of every volume ID) too long.
	_, err := runHelm(t, append([]string{"template", "a-long-release-name", chartDir, "--kube-version", kubeVersion}, requiredValues...)...)
	if err == nil || !strings.Contains(err.Error(), "longer than 27") {
		t.Fatalf("long release name: want a server name length error, got %v", err)
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
