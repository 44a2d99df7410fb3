// Package structure checks the shape docs/architecture.md describes, so it
// stays true: which packages may import which, and no production file
// grows into a god file.
package structure

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/dots-csi/dots"

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module+"/")] = p
	}
	return pkgs
}

func ours(imports []string) []string {
	var out []string
	for _, i := range imports {
		if i == module || strings.HasPrefix(i, module+"/") {
			out = append(out, strings.TrimPrefix(i, module+"/"))
		}
	}
	return out
}

// TestLeaves: the contract and the gRPC plumbing import nothing of dots, so
// everything may import them.
func TestLeaves(t *testing.T) {
	pkgs := listPackages(t)
	for _, leaf := range []string{"pkg/api", "pkg/csirpc", "pkg/lockset", "pkg/health", "pkg/capacity", "pkg/version", "pkg/zfs/command", "pkg/mtls", "pkg/kubeclient", "internal/poll", "internal/mountfake"} {
		p, ok := pkgs[leaf]
		if !ok {
			t.Errorf("package %s is gone: update this test and docs/architecture.md", leaf)
			continue
		}
		if got := ours(p.Imports); len(got) > 0 {
			t.Errorf("%s imports %v; it must import no dots package", leaf, got)
		}
	}
}

// TestMTLSImports: the TLS code stays small enough to audit: the standard
// library, grpc, prometheus and klog, nothing else.
func TestMTLSImports(t *testing.T) {
	p, ok := listPackages(t)["pkg/mtls"]
	if !ok {
		t.Fatal("package pkg/mtls is gone: update this test and docs/architecture.md")
	}
	allowed := []string{"google.golang.org/grpc", "github.com/prometheus/client_golang/", "k8s.io/klog/v2"}
	for _, imp := range p.Imports {
		std := !strings.Contains(strings.Split(imp, "/")[0], ".")
		if !std && !slices.ContainsFunc(allowed, func(a string) bool { return strings.HasPrefix(imp, a) }) {
			t.Errorf("pkg/mtls imports %s; allowed are the standard library and %v", imp, allowed)
		}
	}
}

// TestDependencies: the controller and node know servers only through the
// contract and CSI; production code never depends on test machinery.
func TestDependencies(t *testing.T) {
	pkgs := listPackages(t)
	forbidden := map[string][]string{
		"pkg/driver":     {"pkg/server", "pkg/zfs", "pkg/nfs", "pkg/replicator"},
		"pkg/registry":   {"pkg/server", "pkg/zfs", "pkg/nfs"},
		"pkg/zfs":        {"pkg/server", "pkg/driver", "pkg/nfs"},
		"pkg/nfs":        {"pkg/server", "pkg/driver", "pkg/zfs"},
		"pkg/server":     {"pkg/driver", "pkg/local"},
		"pkg/mounter":    {"pkg/server", "pkg/zfs", "pkg/nfs", "pkg/driver"},
		"pkg/placements": {"pkg/server", "pkg/zfs", "pkg/nfs", "pkg/driver", "pkg/registry"},
		// The wire of replication is the controller's too: the contract
		// and gRPC only. The server side knows the pool, never the server.
		"pkg/replication": {"pkg/server", "pkg/driver", "pkg/zfs", "pkg/nfs", "pkg/replicator", "pkg/registry"},
		"pkg/replicator":  {"pkg/server", "pkg/driver", "pkg/nfs", "pkg/registry", "pkg/placements"},
		// Failover knows Kubernetes objects, not volumes or servers' APIs.
		"pkg/failover": {"pkg/server", "pkg/zfs", "pkg/nfs", "pkg/driver", "pkg/registry", "pkg/placements", "pkg/api", "pkg/csirpc"},
		// Pods of moved volumes and orphaned pools: Kubernetes objects and
		// the contract's types, never a server's API.
		"pkg/workloads": {"pkg/server", "pkg/zfs", "pkg/nfs", "pkg/driver", "pkg/registry", "pkg/placements", "pkg/csirpc", "pkg/replication"},
	}
	for name, deny := range forbidden {
		p := pkgs[name]
		deps := ours(p.Deps)
		for _, d := range deny {
			if slices.Contains(deps, d) {
				t.Errorf("%s depends on %s", name, d)
			}
		}
	}
	for name, p := range pkgs {
		if strings.HasPrefix(name, "internal/") || strings.HasPrefix(name, "test/") {
			continue
		}
		for _, d := range ours(p.Deps) {
			if d == "internal/testenv" || d == "internal/serverenv" || d == "internal/replenv" || d == "internal/mountfake" || d == "internal/poll" || d == "internal/memserver" {
				t.Errorf("production package %s depends on test machinery %s", name, d)
			}
		}
	}
}

// TestFileSizes: no production Go file over 600 lines.
func TestFileSizes(t *testing.T) {
	for name, p := range listPackages(t) {
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			n := countLines(t, path)
			if n > 600 {
				t.Errorf("%s/%s has %d lines; split it by concern (at most 600)", name, f, n)
			}
		}
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
	}
	return n
}
