//go:build integration

package helm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

const (
	chartDir    = "../../deploy/helm/dots"
	kubeVersion = "1.34.4"
	namespace   = "storage"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBin builds helm once (hack/k8s/build-tools.sh caches it across runs).
func helmBin(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		cmd := exec.Command("../../hack/k8s/build-tools.sh", "helm")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			helmErr = fmt.Errorf("build-tools.sh helm: %v\n%s", err, stderr.String())
			return
		}
		helmPath = filepath.Join(strings.TrimSpace(string(out)), "bin", "helm")
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return helmPath
}

func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// obj is one rendered manifest.
type obj map[string]any

func (o obj) kind() string { s, _ := o["kind"].(string); return s }
func (o obj) name() string { s, _ := dig(o, "metadata", "name").(string); return s }

// manifests is the output of one `helm template`.
type manifests []obj

// requiredValues are the values a user must give (later flags override).
var requiredValues = []string{"--set", "server.nfs.clients={10.0.0.0/16}"}

// snapshotAPI renders as in a cluster that serves the snapshot CRDs.
var snapshotAPI = []string{"--api-versions", "snapshot.storage.k8s.io/v1/VolumeSnapshotClass"}

// render runs helm template with the given --set / --set-json / -f flags.
func render(t *testing.T, flags ...string) manifests {
	t.Helper()
	out, err := renderErr(t, flags...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func renderErr(t *testing.T, flags ...string) (manifests, error) {
	t.Helper()
	args := append([]string{"template", "dots", chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, requiredValues...)
	args = append(args, flags...)
	out, err := runHelm(t, args...)
	if err != nil {
		return nil, err
	}
	return decodeManifests(out)
}

// decodeManifests reads the objects of a YAML stream.
func decodeManifests(out string) (manifests, error) {
	var ms manifests
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("rendered YAML does not parse: %v", err)
		}
		if m != nil {
			ms = append(ms, obj(m))
		}
	}
	return ms, nil
}

func (ms manifests) get(t *testing.T, kind, name string) obj {
	t.Helper()
	for _, m := range ms {
		if m.kind() == kind && m.name() == name {
			return m
		}
	}
	t.Fatalf("no %s %q rendered", kind, name)
	return nil
}

// without returns the manifests but the named object.
func (ms manifests) without(kind, name string) manifests {
	var out manifests
	for _, m := range ms {
		if m.kind() != kind || m.name() != name {
			out = append(out, m)
		}
	}
	return out
}

func (ms manifests) all(kind string) []obj {
	var out []obj
	for _, m := range ms {
		if m.kind() == kind {
			out = append(out, m)
		}
	}
	return out
}

// dig walks maps by string key and lists by int index; nil when absent.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if o, isObj := v.(obj); isObj {
					m = o
				} else {
					return nil
				}
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// container returns the named container of a workload's pod template.
func container(t *testing.T, workload obj, name string) map[string]any {
	t.Helper()
	cs, _ := dig(workload, "spec", "template", "spec", "containers").([]any)
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	t.Fatalf("%s %s has no container %q", workload.kind(), workload.name(), name)
	return nil
}

// args returns a container's args as strings.
func args(c map[string]any) []string {
	l, _ := c["args"].([]any)
	out := make([]string, 0, len(l))
	for _, a := range l {
		out = append(out, fmt.Sprint(a))
	}
	return out
}

// flagValue returns the value of --name=VALUE in args, and whether present.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if a == "--"+name {
			return "", true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func wantFlag(t *testing.T, what string, args []string, name, want string) {
	t.Helper()
	got, ok := flagValue(args, name)
	if !ok {
		t.Errorf("%s: flag --%s missing in %q", what, name, args)
	} else if got != want {
		t.Errorf("%s: --%s=%q, want %q", what, name, got, want)
	}
}

func writeValues(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// volumeMount returns the container's mount of the named volume.
func volumeMount(t *testing.T, c map[string]any, name string) map[string]any {
	t.Helper()
	ms, _ := c["volumeMounts"].([]any)
	for _, m := range ms {
		if mm, ok := m.(map[string]any); ok && mm["name"] == name {
			return mm
		}
	}
	t.Fatalf("container %v does not mount volume %q: %v", c["name"], name, ms)
	return nil
}

// podVolume returns the named volume of a workload's pod template.
func podVolume(t *testing.T, workload obj, name string) map[string]any {
	t.Helper()
	vs, _ := dig(workload, "spec", "template", "spec", "volumes").([]any)
	for _, v := range vs {
		if m, ok := v.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	t.Fatalf("%s %s has no volume %q", workload.kind(), workload.name(), name)
	return nil
}

// hasContainer says whether a workload's pod template has the named container.
func hasContainer(workload obj, name string) bool {
	cs, _ := dig(workload, "spec", "template", "spec", "containers").([]any)
	for _, c := range cs {
		if dig(c, "name") == name {
			return true
		}
	}
	return false
}
