//go:build integration

package helm

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The attacher's rules (external-attacher v4: PVs, VolumeAttachments and
// their status, CSINodes; not Nodes), and its leader election.
var attacherRules = []struct {
	group, resource string
	verbs           []string
}{
	{"", "persistentvolumes", []string{"get", "list", "watch", "patch"}},
	{"storage.k8s.io", "volumeattachments", []string{"get", "list", "watch", "patch"}},
	{"storage.k8s.io", "volumeattachments/status", []string{"patch"}},
	{"storage.k8s.io", "csinodes", []string{"get", "list", "watch"}},
}

// verbsFor returns the verbs a role's rules grant on group/resource.
func verbsFor(role obj, group, resource string) []string {
	var verbs []string
	rules, _ := role["rules"].([]any)
	for _, r := range rules {
		if slices.Contains(toStrings(dig(r, "apiGroups")), group) && slices.Contains(toStrings(dig(r, "resources")), resource) {
			verbs = append(verbs, toStrings(dig(r, "verbs"))...)
		}
	}
	return verbs
}

// exports.perNode (default): attach required, the attacher runs, the
// controller publishes, each export admits only its nodes, and nodes say
// their address.
func TestPerNodeExports(t *testing.T) {
	ms := render(t)
	if dig(ms.get(t, "CSIDriver", "dots.csi.dev"), "spec", "attachRequired") != true {
		t.Error("per-node exports need attachRequired: true")
	}
	d := ms.get(t, "Deployment", "dots-controller")
	wantFlag(t, "controller", args(container(t, d, "dots")), "controller-publish", "")
	att := container(t, d, "csi-attacher")
	if img, _ := att["image"].(string); !strings.HasPrefix(img, "registry.k8s.io/sig-storage/csi-attacher:v4.") {
		t.Errorf("attacher image %v", att["image"])
	}
	a := args(att)
	for flag, want := range map[string]string{
		"csi-address": "/csi/csi.sock", "leader-election": "", "leader-election-namespace": namespace,
		"timeout": "60s", "worker-threads": "10", "v": "2",
	} {
		wantFlag(t, "attacher", a, flag, want)
	}
	// As restricted as the other sidecars, with their resources.
	prov := container(t, d, "csi-provisioner")
	for _, k := range []string{"securityContext", "resources", "volumeMounts"} {
		if !reflect.DeepEqual(att[k], prov[k]) {
			t.Errorf("attacher %s %v differs from the provisioner's %v", k, att[k], prov[k])
		}
	}

	wantFlag(t, "server", args(container(t, ms.get(t, "StatefulSet", "dots-server"), "dots")), "export-access", "per-node")
	wantFlag(t, "server", args(container(t, ms.get(t, "StatefulSet", "dots-server"), "dots")), "nfs-clients", "10.0.0.0/16")

	// The node's ID becomes NAME@ADDRESS: the address is the host's, the
	// one its NFS mounts come from (host network).
	node := container(t, ms.get(t, "DaemonSet", "dots-node"), "dots")
	wantFlag(t, "node", args(node), "node-address", "$(NODE_IP)")
	wantFlag(t, "node", args(node), "node-id", "$(NODE_NAME)")
	found := false
	for _, e := range node["env"].([]any) {
		if dig(e, "name") == "NODE_IP" {
			found = dig(e, "valueFrom", "fieldRef", "fieldPath") == "status.hostIP"
		}
	}
	if !found {
		t.Errorf("NODE_IP must come from status.hostIP: %v", node["env"])
	}

	// The attacher's RBAC, least privilege: exactly what it needs.
	cr := ms.get(t, "ClusterRole", "dots-controller")
	for _, r := range attacherRules {
		got := verbsFor(cr, r.group, r.resource)
		for _, v := range r.verbs {
			if !slices.Contains(got, v) {
				t.Errorf("the attacher may not %s %s (has %v)", v, r.resource, got)
			}
		}
		if r.resource != "persistentvolumes" && len(got) != len(r.verbs) {
			t.Errorf("%s: verbs %v, want exactly %v", r.resource, got, r.verbs)
		}
	}
	role := ms.get(t, "Role", "dots-controller-leader-election")
	for _, v := range []string{"get", "watch", "list", "delete", "update", "create"} {
		if !slices.Contains(verbsFor(role, "coordination.k8s.io", "leases"), v) {
			t.Errorf("leader election: the sidecars may not %s leases", v)
		}
	}
	for _, res := range []string{"nodes", "secrets"} {
		if v := verbsFor(cr, "", res); len(v) != 0 {
			t.Errorf("the controller's account may %v %s", v, res)
		}
	}
}

// exports.perNode=false: every export admits server.nfs.clients; no attach
// step, no attacher and no rights for it.
func TestClientsExports(t *testing.T) {
	ms := render(t, "--set", "exports.perNode=false")
	if dig(ms.get(t, "CSIDriver", "dots.csi.dev"), "spec", "attachRequired") != false {
		t.Error("exports.perNode=false: attachRequired must be false")
	}
	d := ms.get(t, "Deployment", "dots-controller")
	if hasContainer(d, "csi-attacher") {
		t.Error("exports.perNode=false still runs the attacher")
	}
	if _, ok := flagValue(args(container(t, d, "dots")), "controller-publish"); ok {
		t.Error("exports.perNode=false still passes --controller-publish")
	}
	wantFlag(t, "server", args(container(t, ms.get(t, "StatefulSet", "dots-server"), "dots")), "export-access", "clients")
	cr := ms.get(t, "ClusterRole", "dots-controller")
	for _, r := range attacherRules[1:] {
		if v := verbsFor(cr, r.group, r.resource); len(v) != 0 {
			t.Errorf("exports.perNode=false still grants %v on %s", v, r.resource)
		}
	}
	// mTLS does not depend on it.
	checkTLSMounts(t, ms, "dots-tls-server", "dots-tls-controller")
}

// Squash, anonymous and owner ids, and the root directory's mode, per
// StorageClass; ids stay integers however large.
func TestSquashStorageClass(t *testing.T) {
	values := writeValues(t, `
storageClasses:
  - name: shared
    mountOptions: [nfsvers=4.1, hard, nosuid, nodev]
    parameters: {squash: root, gid: 2000, mode: "2775"}
  - name: anon
    parameters: {squash: all, anonUID: 1000680000, anonGID: "1000680000", uid: 0, mode: "0770"}
  - name: open
    parameters: {squash: none}
`)
	ms := render(t, "-f", values)
	for name, want := range map[string]map[string]any{
		"shared": {"squash": "root", "gid": "2000", "mode": "2775"},
		"anon":   {"squash": "all", "anonUID": "1000680000", "anonGID": "1000680000", "uid": "0", "mode": "0770"},
		"open":   {"squash": "none"},
	} {
		if got := ms.get(t, "StorageClass", name)["parameters"]; !reflect.DeepEqual(got, want) {
			t.Errorf("StorageClass %s parameters %v, want %v", name, got, want)
		}
	}
	// The server's default for classes without squash stays no_root_squash:
	// fsGroup is applied by a chown as root.
	wantFlag(t, "server", args(container(t, ms.get(t, "StatefulSet", "dots-server"), "dots")), "nfs-squash", "no_root_squash")
}

func TestExportValuesRefused(t *testing.T) {
	sc := func(s string) []string { return []string{"--set", "storageClasses[0].name=x," + s} }
	for name, tc := range map[string]struct {
		flags []string
		want  string
	}{
		"bad squash":              {sc("storageClasses[0].parameters.squash=root_squash"), "squash"},
		"negative gid":            {sc("storageClasses[0].parameters.gid=-1"), "gid"},
		"non-numeric uid":         {sc("storageClasses[0].parameters.uid=nobody"), "uid"},
		"anonUID out of range":    {sc("storageClasses[0].parameters.anonUID=4294967295"), "anonUID"},
		"mode as a number":        {sc("storageClasses[0].parameters.mode=2775"), "mode"},
		"mode not octal":          {sc("storageClasses[0].parameters.mode=0789"), "mode"},
		"suid mount option":       {sc("storageClasses[0].mountOptions={hard,suid}"), "mountOptions"},
		"dev mount option":        {sc("storageClasses[0].mountOptions={dev}"), "mountOptions"},
		"suid inside an option":   {sc(`storageClasses[0].mountOptions={hard\,suid}`), "mountOptions"},
		"unknown exports key":     {[]string{"--set", "exports.perVolume=true"}, "perVolume"},
		"exports.perNode string":  {[]string{"--set-string", "exports.perNode=yes"}, "perNode"},
		"contradicting attachReq": {[]string{"--set", "csiDriver.attachRequired=false"}, "exports.perNode"},
		"attacher without image":  {[]string{"--set", "sidecars.attacher.image="}, "image"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderErr(t, tc.flags...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error mentioning %q, got %v", tc.want, err)
			}
		})
	}
	// The deprecated csiDriver.attachRequired passes while it agrees.
	for _, flags := range [][]string{
		{"--set", "csiDriver.attachRequired=true"},
		{"--set", "csiDriver.attachRequired=false,exports.perNode=false"},
		// Options that merely contain the letters are no suid or dev.
		{"--set", "storageClasses[0].name=x,storageClasses[0].mountOptions={nosuid,nodev,devfoo}"},
	} {
		if _, err := renderErr(t, flags...); err != nil {
			t.Errorf("%v: %v", flags, err)
		}
	}
}
