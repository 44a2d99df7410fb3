//go:build integration

package helm

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// snapshotParts says what of the snapshot machinery a rendering holds: the
// VolumeSnapshotClass, the csi-snapshotter sidecar, and RBAC on
// snapshot.storage.k8s.io.
func snapshotParts(t *testing.T, ms manifests) (class, sidecar, rbac bool) {
	t.Helper()
	class = len(ms.all("VolumeSnapshotClass")) > 0
	sidecar = hasContainer(ms.get(t, "Deployment", "dots-controller"), "csi-snapshotter")
	for _, r := range ms.all("ClusterRole") {
		rules, _ := r["rules"].([]any)
		for _, rule := range rules {
			if slices.Contains(toStrings(dig(rule, "apiGroups")), "snapshot.storage.k8s.io") {
				rbac = true
			}
		}
	}
	return class, sidecar, rbac
}

// Snapshots follow what the cluster serves (helm install asks it; helm
// template takes --api-versions), unless snapshots.enabled forces them.
func TestSnapshotsFollowTheAPI(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
		want  bool
	}{
		{"no snapshot API", nil, false},
		{"VolumeSnapshotClass served", snapshotAPI, true},
		{"group version served", []string{"--api-versions", "snapshot.storage.k8s.io/v1"}, true},
		{"only v1beta1 served", []string{"--api-versions", "snapshot.storage.k8s.io/v1beta1/VolumeSnapshotClass"}, false},
		{"forced on without the API", []string{"--set", "snapshots.enabled=true"}, true},
		{"forced off with the API", append([]string{"--set", "snapshots.enabled=false"}, snapshotAPI...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := render(t, tc.flags...)
			class, sidecar, rbac := snapshotParts(t, ms)
			if class != tc.want || sidecar != tc.want || rbac != tc.want {
				t.Errorf("VolumeSnapshotClass %v, csi-snapshotter %v, snapshot RBAC %v; want all %v", class, sidecar, rbac, tc.want)
			}
			// The rest of the controller is there either way.
			d := ms.get(t, "Deployment", "dots-controller")
			for _, c := range []string{"dots", "csi-provisioner", "csi-attacher", "csi-resizer", "liveness-probe"} {
				if !hasContainer(d, c) {
					t.Errorf("container %s missing", c)
				}
			}
		})
	}
	if _, err := renderErr(t, "--set", "snapshots.enabled=maybe"); err == nil || !strings.Contains(err.Error(), "snapshots") {
		t.Errorf("snapshots.enabled=maybe: %v, want a schema error", err)
	}
}

// renderNotes renders NOTES.txt as helm install would print it (without a
// cluster: lookups find nothing). helm template never renders NOTES, so
// the test renders a copy of the chart in which NOTES.txt is a template
// defined in a helper and printed into a ConfigMap.
func renderNotes(t *testing.T, flags ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dots")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"templates/_notes_test.tpl": `{{- define "test.notes" -}}` + string(notes) + `{{- end }}`,
		"templates/notes-test.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes-test}\ndata:\n  notes: {{ include \"test.notes\" . | toJson }}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(dir, "templates", "NOTES.txt")); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"template", "dots", dir, "--namespace", namespace, "--kube-version", kubeVersion,
		"--show-only", "templates/notes-test.yaml"}, requiredValues...)
	out, err := runHelm(t, append(args, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := dig(ms.get(t, "ConfigMap", "notes-test"), "data", "notes").(string)
	return s
}

// NOTES says whether snapshots are on, and when they are off because the
// cluster lacks the API, what is missing and how to add it.
func TestNotesOnSnapshots(t *testing.T) {
	off := renderNotes(t)
	for _, want := range []string{"Snapshots: off", "does not serve snapshot.storage.k8s.io/v1", "snapshot CRDs",
		"snapshot-controller", "client/config/crd", "helm upgrade dots <chart> --namespace storage --reuse-values"} {
		if !strings.Contains(off, want) {
			t.Errorf("NOTES without the snapshot API does not say %q:\n%s", want, off)
		}
	}
	if forcedOff := renderNotes(t, append([]string{"--set", "snapshots.enabled=false"}, snapshotAPI...)...); !strings.Contains(forcedOff, "by snapshots.enabled=false") ||
		!strings.Contains(forcedOff, "--set snapshots.enabled=auto") {
		t.Errorf("NOTES with snapshots.enabled=false:\n%s", forcedOff)
	}
	on := renderNotes(t, snapshotAPI...)
	if !strings.Contains(on, "Snapshots: on (csi-snapshotter, VolumeSnapshotClass dots)") || strings.Contains(on, "Snapshots: off") {
		t.Errorf("NOTES with the snapshot API:\n%s", on)
	}
	// The install path: label the storage nodes, check with dots servers.
	for _, want := range []string{"dots.csi.dev/storage-node=true",
		"kubectl exec -n storage deploy/dots-controller -c dots -- dots servers"} {
		if !strings.Contains(on, want) {
			t.Errorf("NOTES does not say %q:\n%s", want, on)
		}
	}
}

// groupParts says what of group snapshots a rendering holds: the
// VolumeGroupSnapshotClass's apiVersion ("" for none), the csi-snapshotter's
// feature gate, and RBAC on groupsnapshot.storage.k8s.io.
func groupParts(t *testing.T, ms manifests) (classAPI string, gate string, rbac bool) {
	t.Helper()
	if cs := ms.all("VolumeGroupSnapshotClass"); len(cs) > 0 {
		classAPI, _ = cs[0]["apiVersion"].(string)
	}
	d := ms.get(t, "Deployment", "dots-controller")
	containers, _ := dig(d, "spec", "template", "spec", "containers").([]any)
	for _, c := range containers {
		if dig(c, "name") != "csi-snapshotter" {
			continue
		}
		for _, a := range toStrings(dig(c, "args")) {
			if v, ok := strings.CutPrefix(a, "--feature-gates=CSIVolumeGroupSnapshot="); ok {
				gate = v
			}
		}
	}
	for _, r := range ms.all("ClusterRole") {
		rules, _ := r["rules"].([]any)
		for _, rule := range rules {
			if slices.Contains(toStrings(dig(rule, "apiGroups")), "groupsnapshot.storage.k8s.io") {
				rbac = true
			}
		}
	}
	return classAPI, gate, rbac
}

// Group snapshots follow the group snapshot API the cluster serves (its
// newest version names the class), need snapshots on, and turn the
// csi-snapshotter's feature gate on with them.
func TestGroupSnapshotsFollowTheAPI(t *testing.T) {
	groupAPI := func(v string) []string {
		return []string{"--api-versions", "groupsnapshot.storage.k8s.io/" + v + "/VolumeGroupSnapshotClass"}
	}
	for _, tc := range []struct {
		name  string
		flags []string
		api   string // "" when off
		gate  string // "" when there is no csi-snapshotter
	}{
		{"snapshots only", snapshotAPI, "", "false"},
		{"v1beta1 served", append(groupAPI("v1beta1"), snapshotAPI...), "groupsnapshot.storage.k8s.io/v1beta1", "true"},
		{"v1beta2 and v1beta1 served", append(append(groupAPI("v1beta1"), groupAPI("v1beta2")...), snapshotAPI...), "groupsnapshot.storage.k8s.io/v1beta2", "true"},
		{"v1 served", append(append(groupAPI("v1beta2"), groupAPI("v1")...), snapshotAPI...), "groupsnapshot.storage.k8s.io/v1", "true"},
		{"group version served", append([]string{"--api-versions", "groupsnapshot.storage.k8s.io/v1beta2"}, snapshotAPI...), "groupsnapshot.storage.k8s.io/v1beta2", "true"},
		{"group API without snapshots", groupAPI("v1"), "", ""},
		{"forced on without the API", append([]string{"--set", "groupSnapshots.enabled=true"}, snapshotAPI...), "groupsnapshot.storage.k8s.io/v1", "true"},
		{"forced off with the API", append(append([]string{"--set", "groupSnapshots.enabled=false"}, groupAPI("v1")...), snapshotAPI...), "", "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api, gate, rbac := groupParts(t, render(t, tc.flags...))
			if api != tc.api || gate != tc.gate || rbac != (tc.api != "") {
				t.Errorf("VolumeGroupSnapshotClass %q, feature gate %q, group RBAC %v; want %q, %q, %v", api, gate, rbac, tc.api, tc.gate, tc.api != "")
			}
		})
	}
	ms := render(t, append(append([]string{"--set", "volumeGroupSnapshotClasses[0].name=fast", "--set", "volumeGroupSnapshotClasses[0].deletionPolicy=Retain"}, groupAPI("v1")...), snapshotAPI...)...)
	c := ms.get(t, "VolumeGroupSnapshotClass", "fast")
	if c["driver"] != "dots.csi.dev" || c["deletionPolicy"] != "Retain" {
		t.Errorf("class %v: want the driver and deletionPolicy Retain", c)
	}
	if _, err := renderErr(t, "--set", "groupSnapshots.enabled=maybe"); err == nil || !strings.Contains(err.Error(), "groupSnapshots") {
		t.Errorf("groupSnapshots.enabled=maybe: %v, want a schema error", err)
	}
}

// NOTES say whether group snapshots are on, and why not.
func TestNotesOnGroupSnapshots(t *testing.T) {
	on := renderNotes(t, append([]string{"--api-versions", "groupsnapshot.storage.k8s.io/v1/VolumeGroupSnapshotClass"}, snapshotAPI...)...)
	if !strings.Contains(on, "Group snapshots: on (VolumeGroupSnapshotClass dots;") || !strings.Contains(on, "on one storage server") {
		t.Errorf("NOTES with the group snapshot API:\n%s", on)
	}
	if off := renderNotes(t, snapshotAPI...); !strings.Contains(off, "Group snapshots: off (this cluster does not serve groupsnapshot.storage.k8s.io") {
		t.Errorf("NOTES without the group snapshot API:\n%s", off)
	}
	if forced := renderNotes(t, append([]string{"--set", "groupSnapshots.enabled=false"}, snapshotAPI...)...); !strings.Contains(forced, "Group snapshots: off (groupSnapshots.enabled=false)") {
		t.Errorf("NOTES with groupSnapshots.enabled=false:\n%s", forced)
	}
}
