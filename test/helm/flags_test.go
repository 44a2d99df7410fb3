//go:build integration

package helm

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var flagLine = regexp.MustCompile(`(?m)^\s+-([a-z0-9_-]+)`)

// binaryFlags builds cmd/dots and lists the flags of one subcommand.
func binaryFlags(t *testing.T, bin, sub string) map[string]bool {
	t.Helper()
	// `dots SUB -h` prints the flags (and exits 0).
	out, _ := exec.Command(bin, sub, "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 5 {
		t.Fatalf("dots %s -h listed no flags:\n%s", sub, out)
	}
	return flags
}

// Every flag the chart passes to dots must exist in the binary: a typo
// would crash-loop every pod of a release.
func TestChartFlagsExistInBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "dots")
	build := exec.Command("go", "build", "-o", bin, "./cmd/dots")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/dots: %v\n%s", err, out)
	}
	known := map[string]map[string]bool{}
	for _, values := range [][]string{
		nil,
		{"--set", "server.storage.volumeMode=Filesystem,server.storage.poolFileSize=950Gi"},
		{"--set", "discovery.mode=static", "--set-json", `discovery.servers=[{"name":"ext-0","apiAddress":"10.1.2.3:7070","nfsAddress":"10.1.2.3"}]`},
		{"--set", "exports.perNode=false,tls.certManager.enabled=true"},
		{"--set", "tls.existingSecrets.server=s,tls.existingSecrets.controller=c"},
	} {
		ms := render(t, values...)
		for _, w := range []struct{ kind, name string }{
			{"Deployment", "dots-controller"}, {"DaemonSet", "dots-node"}, {"StatefulSet", "dots-server"},
		} {
			a := args(container(t, ms.get(t, w.kind, w.name), "dots"))
			sub := a[0]
			if known[sub] == nil {
				known[sub] = binaryFlags(t, bin, sub)
			}
			for _, arg := range a[1:] {
				name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
				if !strings.HasPrefix(arg, "--") || !known[sub][name] {
					t.Errorf("%s %s: `dots %s` has no flag %q", w.kind, w.name, sub, arg)
				}
			}
		}
	}
}
