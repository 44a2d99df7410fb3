//go:build image

package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/nfs"
	yaml "go.yaml.in/yaml/v3"
)

// toolsDir builds (once, cached) the named tools with hack/k8s/build-tools.sh
// and returns the directory holding bin/.
func toolsDir(t *testing.T, tools ...string) string {
	t.Helper()
	// A cold helm build takes minutes; make test has built it before.
	return strings.TrimSpace(must(t, 30*time.Minute, append([]string{filepath.Join(repo, "hack/k8s/build-tools.sh")}, tools...)...))
}

// chartValueSets are value sets whose dots arguments differ (test/helm
// renders the same ones).
var chartValueSets = [][]string{
	nil,
	{"--set", "server.storage.volumeMode=Filesystem,server.storage.poolFileSize=950Gi"},
	{"--set", "discovery.mode=static", "--set-json", `discovery.servers=[{"name":"ext-0","apiAddress":"10.1.2.3:7070","nfsAddress":"10.1.2.3"}]`},
	{"--set", "exports.perNode=false,tls.certManager.enabled=true"},
	{"--set", "tls.existingSecrets.server=s,tls.existingSecrets.controller=c"},
}

// dotsContainer is the dots container of one rendered workload.
type dotsContainer struct {
	workload string
	command  []string
	args     []string
}

// renderDots renders the chart with helm template and returns the dots
// containers of its workloads.
func renderDots(t *testing.T, helm string, values []string) []dotsContainer {
	t.Helper()
	argv := append([]string{helm, "template", "dots", filepath.Join(repo, "deploy/helm/dots"),
		"--namespace", "storage", "--kube-version", "1.34.4", "--set", "server.nfs.clients={10.0.0.0/16}"}, values...)
	out := must(t, 2*time.Minute, argv...)
	var found []dotsContainer
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var doc struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Name    string   `yaml:"name"`
							Command []string `yaml:"command"`
							Args    []string `yaml:"args"`
						} `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("helm template output: %v", err)
		}
		for _, c := range doc.Spec.Template.Spec.Containers {
			if c.Name == "dots" {
				found = append(found, dotsContainer{doc.Kind + "/" + doc.Metadata.Name, c.Command, c.Args})
			}
		}
	}
	if len(found) != 3 {
		t.Fatalf("values %q: %d dots containers rendered, want 3 (controller, node, server)", values, len(found))
	}
	return found
}

var flagLine = regexp.MustCompile(`(?m)^\s+-([a-z0-9_-]+)`)

// checkChartFlags runs the image's dots with exactly the arguments the
// chart gives each of its containers: every flag must exist and every value
// parse (a typo would crash-loop every pod of a release).
func checkChartFlags(t *testing.T, root string) {
	helm := filepath.Join(toolsDir(t, "helm"), "bin", "helm")
	known := map[string]map[string]bool{}
	checked := map[string]bool{}
	for _, values := range chartValueSets {
		for _, c := range renderDots(t, helm, values) {
			if len(c.command) != 0 || len(c.args) == 0 {
				t.Errorf("%s: command %q args %q: the image's entrypoint is dots, the chart passes the subcommand as args", c.workload, c.command, c.args)
				continue
			}
			sub := c.args[0]
			if known[sub] == nil {
				out, errOut, _ := inImage(t, root, "dots", sub, "-h")
				known[sub] = map[string]bool{}
				for _, m := range flagLine.FindAllStringSubmatch(out+errOut, -1) {
					known[sub][m[1]] = true
				}
				if len(known[sub]) < 5 {
					t.Fatalf("dots %s -h in the image listed no flags:\n%s%s", sub, out, errOut)
				}
			}
			for _, a := range c.args[1:] {
				name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if !strings.HasPrefix(a, "--") || !known[sub][name] {
					t.Errorf("%s: the image's `dots %s` has no flag %q", c.workload, sub, a)
				}
			}
			key := strings.Join(c.args, "\x00")
			if checked[key] {
				continue
			}
			checked[key] = true
			// Parsing stops at -h, after every flag before it was set:
			// exit status 0 (help asked for) means all of them parsed; a
			// bad flag exits 2 before -h is reached.
			out, errOut, code := inImage(t, root, append(append([]string{"dots"}, c.args...), "-h")...)
			if code != 0 || strings.Contains(out+errOut, "flag provided but not defined") || strings.Contains(out+errOut, "invalid value") {
				t.Errorf("%s: dots %s -h in the image: exit status %d\n%s", c.workload, strings.Join(c.args, " "), code, firstLines(out+errOut, 5))
			}
		}
	}
	t.Logf("%d distinct argument lists of %d subcommands accepted by the image's dots", len(checked), len(known))
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// checkGanesha runs the image's ganesha.nfsd under pkg/nfs, as dots server
// does (its config, its supervision, an export added by a reload), with no
// rpcbind or DBus in the image's view, and reads a file through the export
// with libnfs from this machine.
func checkGanesha(t *testing.T, root string) {
	// pkg/nfs execs Binary with ganesha's arguments; this one runs the
	// image's ganesha with this machine's temporary directory (where the
	// run directory and the export live) at the same path.
	wrapper := filepath.Join(t.TempDir(), "ganesha-in-image")
	script := fmt.Sprintf("#!/bin/sh\nexec %q --bind %q %q /usr/bin/ganesha.nfsd \"$@\"\n",
		filepath.Join(mustAbs(t, repo), "hack/image/run.sh"), os.TempDir(), root)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	g := testenv.StartGanesha(t, nil, func(c *nfs.GaneshaConfig) {
		c.Binary = wrapper
		c.Protocols = []int{4} // as the chart: no rpcbind in the pod
		c.MountPort = 0
	})
	vol := filepath.Join(g.Dir, "data", "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	want := []byte("served by the image's ganesha\n")
	if err := os.WriteFile(filepath.Join(vol, "hello.txt"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := g.Export(ctx, nfs.Export{ID: 7, Path: vol, Pseudo: "/dots/vol", Clients: []string{"127.0.0.1"}}); err != nil {
		t.Fatalf("export through the image's ganesha: %v", err)
	}
	exported := time.Since(start)
	client := g.Client
	client.Version = 4 // ganesha serves NFSv4 only here
	got, err := client.ReadFile(ctx, "/dots/vol", "hello.txt")
	if err != nil {
		t.Fatalf("reading through the image's ganesha: %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("read %q through NFS, want %q", got, want)
	}
	t.Logf("the image's ganesha (pid %d) exported a directory in %s and served a file over NFSv4", g.Pid(), exported.Round(time.Millisecond))
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
