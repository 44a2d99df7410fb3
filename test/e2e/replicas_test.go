package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The contract's keys of replicated volumes (pkg/api/replication.go; this
// module does not import the driver).
const (
	ctxServers  = "dots.csi.dev/servers"
	ctxReplicas = "dots.csi.dev/replicas"
)

// candidate is api.Candidate: one server a node may mount a volume from.
type candidate struct {
	Server    string `json:"server"`
	Address   string `json:"address"`
	Port      int    `json:"port,omitempty"`
	LocalPath string `json:"localPath,omitempty"`
}

// replicaStatus is the part of api.ReplicaStatus this test reads.
type replicaStatus struct {
	Server   string    `json:"server"`
	LastSync time.Time `json:"lastSync"`
}

// replicaPath: a StorageClass with replicas, a claim bound through the
// external-provisioner, the PV listing both servers (primary first), the
// replica holding the primary's replication snapshots, and the node
// staging the volume from that list.
func replicaPath(t *testing.T, s *steps, e *env) {
	ctx, k := e.ctx, e.kube
	pvcs := k.cs.CoreV1().PersistentVolumeClaims(namespace)
	var pv *corev1.PersistentVolume
	var cands []candidate

	s.run(`9. StorageClass replicas: "2", replicationInterval: "2s" + PVC -> Bound; the PV lists both servers, primary first`, func() {
		immediate := storagev1.VolumeBindingImmediate
		del := corev1.PersistentVolumeReclaimDelete
		sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "dots-replicated"}, Provisioner: driverName,
			ReclaimPolicy: &del, VolumeBindingMode: &immediate,
			Parameters: map[string]string{"replicas": "2", "replicationInterval": "2s"}}
		if _, err := k.cs.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := pvcs.Create(ctx, pvcSpec("replicated", "dots-replicated", "100Mi"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, pv = k.waitPVCBound(t, ctx, namespace, "replicated", time.Minute, e.diag)
		attrs := checkPV(t, e, pv, 100<<20)
		raw, ok := attrs[ctxServers]
		if !ok {
			t.Fatalf("PV %s has no %s: %v", pv.Name, ctxServers, attrs)
		}
		if err := json.Unmarshal([]byte(raw), &cands); err != nil {
			t.Fatalf("%s=%q: %v", ctxServers, raw, err)
		}
		server, volume, _ := strings.Cut(pv.Spec.CSI.VolumeHandle, "/")
		if len(cands) != 2 || cands[0].Server != server || cands[0].Server != attrs[ctxServer] || cands[1].Server == server {
			t.Fatalf("%s lists %+v, want the primary %s then the other server", ctxServers, cands, server)
		}
		for _, c := range cands {
			srv, ok := e.servers[c.Server]
			if !ok {
				t.Fatalf("candidate %+v names an unknown server", c)
			}
			want := candidate{Server: srv.name, Address: "127.0.0.1", Port: srv.nfsPort,
				LocalPath: filepath.Join(e.dir, "mnt", srv.name, "dots", "volumes", volume)}
			if c != want {
				t.Errorf("candidate %+v, want %+v", c, want)
			}
		}
		t.Logf("PV %s: handle %s, servers %s", pv.Name, pv.Spec.CSI.VolumeHandle, raw)
	})
	if pv == nil || len(cands) != 2 {
		return
	}

	payload := fmt.Sprintf("replicated at %s\n", time.Now().Format(time.RFC3339Nano))
	s.run("10. the replica: the other server's pool holds POOL/dots/replicas/NAME with a replication snapshot of the primary's; ControllerGetVolume lists it", func() {
		primary, replica := e.servers[cands[0].Server], e.servers[cands[1].Server]
		_, volume, _ := strings.Cut(pv.Spec.CSI.VolumeHandle, "/")
		// Written where the primary's server has the dataset mounted (the
		// first candidate's local path), so the next increment carries it.
		if err := os.WriteFile(filepath.Join(cands[0].LocalPath, "hello.txt"), []byte(payload), 0o644); err != nil {
			t.Fatal(err)
		}
		written := time.Now()
		replicaDS := replica.pool + "/dots/replicas/" + volume
		primaryDS := primary.pool + "/dots/volumes/" + volume
		var common string
		waitFor(t, "a replication snapshot taken after the write on both sides", 30*time.Second, replica.proc, func() error {
			theirs, err := replSnapshots(replicaDS)
			if err != nil {
				return err
			}
			ours, err := replSnapshots(primaryDS)
			if err != nil {
				return err
			}
			for name, created := range theirs {
				if _, ok := ours[name]; ok && !created.Before(written) {
					common = name
					return nil
				}
			}
			return fmt.Errorf("replica %v, primary %v", theirs, ours)
		})
		t.Logf("replica %s holds %s", replicaDS, common)
		if got := zfsProp(t, replicaDS, "dots:primary"); got != primary.name {
			t.Errorf("dots:primary of the replica is %q, want %s", got, primary.name)
		}

		waitFor(t, "ControllerGetVolume lists the replica", 30*time.Second, e.ctrl, func() error {
			got, err := e.controller(t).ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: pv.Spec.CSI.VolumeHandle})
			if err != nil {
				return err
			}
			raw := got.GetVolume().GetVolumeContext()[ctxReplicas]
			var reps []replicaStatus
			if err := json.Unmarshal([]byte(raw), &reps); err != nil {
				return fmt.Errorf("%s=%q: %v", ctxReplicas, raw, err)
			}
			if len(reps) != 1 || reps[0].Server != replica.name || reps[0].LastSync.IsZero() {
				return fmt.Errorf("%s=%s, want %s with a sync", ctxReplicas, raw, replica.name)
			}
			return nil
		})
	})

	s.run("11. as the kubelet: NodeStage from the PV's server list (local-bind) mounts the primary's dataset; read step 10's data", func() {
		primary := e.servers[cands[0].Server]
		stageAndRead(ctx, t, e, pv, primary, payload, "")
	})

	s.run("12. promote the replica (admin socket, as `dots volume promote`) -> NodeStage with the PV's unchanged server list mounts the new primary, the second listed; step 10's data is there", func() {
		replica := e.servers[cands[1].Server]
		var res struct {
			From       string `json:"from"`
			To         string `json:"to"`
			Generation uint64 `json:"generation"`
			HandedOver bool   `json:"handedOver"`
		}
		adminPost(t, e, "/volumes/promote", map[string]string{"volume": pv.Spec.CSI.VolumeHandle, "to": replica.name}, &res)
		// The old primary answers, so it hands over first: no write lost.
		if res.From != cands[0].Server || res.To != replica.name || res.Generation < 2 || !res.HandedOver {
			t.Fatalf("promotion: %+v, want %s -> %s handed over at a higher generation", res, cands[0].Server, replica.name)
		}
		t.Logf("promoted: %+v", res)
		stageAndRead(ctx, t, e, pv, replica, payload, "Volume staged")
	})

	s.run("13. delete the replicated claim -> PV deleted", func() {
		if err := pvcs.Delete(ctx, "replicated", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "replicated PV deleted", time.Minute, nil, func() error {
			if _, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{}); err == nil {
				return fmt.Errorf("PV %s still exists", pv.Name)
			}
			return nil
		})
	})
}

// adminPost posts a JSON request to the controller's admin socket and
// decodes its answer into out.
func adminPost(t *testing.T, e *env, path string, req, out any) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(e.dir, "admin.sock")
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	rsp, err := c.Post("http://admin"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer rsp.Body.Close()
	data, _ := io.ReadAll(rsp.Body)
	if rsp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s\n%s", path, rsp.Status, data, e.ctrl.tail(20))
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("POST %s: %q: %v", path, data, err)
	}
}

// replSnapshots lists a dataset's replication snapshots (@dots-repl-*)
// with their creation times.
func replSnapshots(dataset string) (map[string]time.Time, error) {
	out, err := run(context.Background(), "zfs", "list", "-H", "-t", "snapshot", "-o", "name,creation", "-r", dataset)
	if err != nil {
		return nil, err
	}
	snaps := map[string]time.Time{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		full, created, _ := strings.Cut(sc.Text(), "\t")
		ds, name, ok := strings.Cut(full, "@")
		if !ok || ds != dataset || !strings.HasPrefix(name, "dots-repl-") {
			continue
		}
		// zfs prints the creation like "Wed Dec  2 05:40 2026" (minutes);
		// the snapshot's name holds its time in nanoseconds.
		var ns int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(name, "dots-repl-"), "%d", &ns); err != nil {
			return nil, fmt.Errorf("snapshot %s: %v (creation %s)", full, err, created)
		}
		snaps[name] = time.Unix(0, ns)
	}
	return snaps, sc.Err()
}

// mountSource is the source of the topmost mount at path, "" when none.
func mountSource(path string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	src := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		_, after, ok := strings.Cut(line, " - ")
		if len(fields) > 4 && fields[4] == path && ok {
			if f := strings.Fields(after); len(f) > 1 {
				src = f[1]
			}
		}
	}
	return src
}

// stageAndRead stages the PV's volume as the kubelet would, from the
// volume context's server list, and checks that the staging path is a
// mount of want's dataset holding payload in hello.txt (and, when
// logLine is set, that the node's last such line names want); then
// unstages it and checks nothing is left mounted.
func stageAndRead(ctx context.Context, t *testing.T, e *env, pv *corev1.PersistentVolume, want *dotsServer, payload, logLine string) {
	t.Helper()
	_, volume, _ := strings.Cut(pv.Spec.CSI.VolumeHandle, "/")
	conn, err := grpc.NewClient("unix://"+e.nodeSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	node := csi.NewNodeClient(conn)
	root := filepath.Join(e.dir, "kubelet")
	staging, _ := kubeletDirs(t, root, pv.Name)
	volCap := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	id, attrs := pv.Spec.CSI.VolumeHandle, pv.Spec.CSI.VolumeAttributes
	if _, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: volCap, VolumeContext: attrs}); err != nil {
		t.Fatalf("NodeStageVolume: %v\n%s", err, e.node.tail(20))
	}
	if src := mountSource(staging); src != want.pool+"/dots/volumes/"+volume {
		t.Errorf("staging path shows %q, want %s's dataset %s/dots/volumes/%s", src, want.name, want.pool, volume)
	}
	if data, err := os.ReadFile(filepath.Join(staging, "hello.txt")); err != nil || string(data) != payload {
		t.Errorf("read through the volume staged from %s: %q, %v", want.name, data, err)
	}
	if logLine != "" {
		if lines := e.node.matching(1, logLine); !strings.Contains(lines, `server="`+want.name+`"`) {
			t.Errorf("the node's log does not say it staged from %s:\n%s", want.name, lines)
		}
	}
	if _, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Errorf("NodeUnstageVolume: %v", err)
	}
	leftoverMounts(t, root)
}
