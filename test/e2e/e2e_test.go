package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// Keys of the volume context (pkg/driver/volumecontext.go): part of every PV.
const (
	ctxServer     = "dots.csi.dev/server"
	ctxNFSAddress = "dots.csi.dev/nfs-address"
	ctxNFSPort    = "dots.csi.dev/nfs-port"
	ctxExport     = "dots.csi.dev/export"
)

const (
	driverName = "dots.csi.dev"
	namespace  = "dots-e2e"
	// The chart's classes (values.yaml) and its controller ServiceAccount,
	// for release "dots".
	chartStorageClass  = "dots"
	chartSnapshotClass = "dots"
	controllerSA       = "dots-controller"
)

// env is everything the steps share.
type env struct {
	ctx      context.Context
	dir      string
	cluster  *cluster
	kube     *kube
	servers  map[string]*dotsServer
	ctrl     *proc
	ctrlSock string
	ctrlConn *grpc.ClientConn // see controller
	node     *proc
	nodeSock string
	side     *sidecars
}

// diag collects the log lines that explain a failed step.
func (e *env) diag() string {
	var b strings.Builder
	for _, p := range []*proc{e.ctrl, sideOrNil(e.side, "provisioner"), sideOrNil(e.side, "attacher"), sideOrNil(e.side, "snapshotter"),
		sideOrNil(e.side, "resizer"), sideOrNil(e.side, "snapshot-controller"), e.cluster.kcm} {
		if p == nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s (errors and warnings) ---\n%s\n", p.name, p.problems(8))
	}
	return b.String()
}

func sideOrNil(s *sidecars, which string) *proc {
	if s == nil {
		return nil
	}
	switch which {
	case "provisioner":
		return s.provisioner
	case "attacher":
		return s.attacher
	case "snapshotter":
		return s.snapshotter
	case "resizer":
		return s.resizer
	}
	return s.snapshotController
}

// steps runs named steps in order, printing each with its duration, and a
// summary at the end (also when a step fails).
type steps struct {
	t    *testing.T
	done []string
}

func (s *steps) run(name string, fn func()) {
	s.t.Helper()
	s.t.Logf("=== %s", name)
	start := time.Now()
	ok := false
	defer func() {
		d := time.Since(start).Round(10 * time.Millisecond)
		result := "ok"
		if !ok {
			result = "FAILED"
		}
		s.done = append(s.done, fmt.Sprintf("%-100s %8s  %s", name, d, result))
		s.t.Logf("--- %s: %s (%s)", name, result, d)
	}()
	fn()
	ok = !s.t.Failed()
}

func (s *steps) summary() {
	s.t.Logf("summary:\n%s", strings.Join(s.done, "\n"))
}

func TestE2E(t *testing.T) {
	requireHost(t)
	dotsBin, err := filepath.Abs(envOr("DOTS_BIN", "../../bin/dots"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dotsBin); err != nil {
		t.Fatalf("dots binary %s: %v (run `make build`)", dotsBin, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	destroyStalePools(t)

	s := &steps{t: t}
	defer s.summary()
	e := &env{ctx: ctx, servers: map[string]*dotsServer{}}
	var toolsRoot string
	s.run("build or reuse the Kubernetes tools (hack/k8s/build-tools.sh)", func() {
		toolsRoot = buildTools(t)
	})
	e.dir = workDir(t)
	s.run("control plane: etcd, kube-apiserver, kube-controller-manager", func() {
		e.cluster = startCluster(t, filepath.Join(toolsRoot, "bin"), e.dir)
		e.kube = newKube(t, e.cluster.config)
	})
	crds, _ := filepath.Glob(filepath.Join(toolsRoot, "crd", "*.yaml"))
	groupCRDs, _ := filepath.Glob(filepath.Join(toolsRoot, "crd", "group", "*.yaml"))
	if len(crds) == 0 || len(groupCRDs) == 0 {
		t.Fatal("no snapshot or group snapshot CRDs in the tools cache")
	}
	crds = append(crds, groupCRDs...)
	installRelease(t, s, e, crds)
	if t.Failed() {
		return
	}
	s.run("dots: 2 storage servers (zfs-fuse, ganesha), controller, node plugin, with the release's certificates", func() {
		prefix := fmt.Sprintf("%s%d-%04x", poolPrefix, os.Getpid(), rand.IntN(1<<16))
		for _, srv := range startServers(t, dotsBin, e.dir, prefix, 2) {
			e.servers[srv.name] = srv
		}
		list := make([]*dotsServer, 0, len(e.servers))
		for _, name := range []string{"e2e-s0", "e2e-s1"} {
			list = append(list, e.servers[name])
		}
		saConfig := saKubeconfig(t, ctx, e.cluster, e.kube, namespace, controllerSA)
		e.ctrl, e.ctrlSock = startController(t, dotsBin, e.dir, saConfig, list, serverSelector(t, e))
		t.Cleanup(func() {
			if e.ctrlConn != nil {
				e.ctrlConn.Close()
			}
		})
		e.node, e.nodeSock = startNode(t, dotsBin, e.dir, list)
		s.t.Logf("controller socket %s", e.ctrlSock)
		e.side = startSidecars(t, ctx, e.cluster, e.kube, namespace, saConfig, e.ctrlSock)
	})
	if t.Failed() {
		return
	}
	s.run("as the kubelet: Node "+nodeName+" (attach-detach by the controller, InternalIP "+nodeAddress+") and its CSINode (node ID from NodeGetInfo)", func() {
		registerNode(t, e)
	})
	if t.Failed() {
		return
	}
	orphanedPoolStep(t, s, e)
	movedVolumeStep(t, s, e)

	userPath(t, s, e)
	replicaPath(t, s, e)
}

// buildTools runs the cached tool build and returns its directory.
func buildTools(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("../../hack/k8s/build-tools.sh")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build-tools.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
