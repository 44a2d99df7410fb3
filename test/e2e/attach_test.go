package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// The one node of the test. There is no kubelet: the test registers the
// node as the kubelet would (registerNode) and calls the node plugin as the
// kubelet would (nodePublishAndRead).
const (
	nodeName    = "e2e-node"
	nodeAddress = "127.0.0.1"
	// nodeID is the node plugin's CSI node ID (NodeGetInfo): its name and
	// the address its NFS traffic comes from, which exports admit.
	nodeID = nodeName + "@" + nodeAddress
	// controllerManagedAttach is the annotation by which a kubelet hands
	// attach and detach of its node's volumes to the attach-detach
	// controller (the kubelet's default, --enable-controller-attach-detach).
	controllerManagedAttach = "volumes.kubernetes.io/controller-managed-attach-detach"
	// vaNodeIDAnnotation is where the external-attacher records the CSI node
	// ID it published a VolumeAttachment to.
	vaNodeIDAnnotation = "csi.alpha.kubernetes.io/node-id"
)

// registerNode does what the kubelet does when it starts and when the
// node plugin registers: the Node object, with the annotation that gives its
// attaches to the attach-detach controller (the only thing that controller
// needs of a Node: without it, pods there get no VolumeAttachment) and its
// address, and the CSINode naming the driver with the node ID the plugin's
// NodeGetInfo answers (the external-attacher maps a VolumeAttachment's node
// to the CSI node ID through it, and finds nothing without it).
func registerNode(t *testing.T, e *env) {
	t.Helper()
	ctx, cs := e.ctx, e.kube.cs

	// The chart's CSIDriver asks for attach: without it the attach-detach
	// controller would make no VolumeAttachments for dots volumes.
	drv, err := cs.StorageV1().CSIDrivers().Get(ctx, driverName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("CSIDriver %s (from the chart): %v", driverName, err)
	}
	if drv.Spec.AttachRequired == nil || !*drv.Spec.AttachRequired {
		t.Fatalf("CSIDriver %s: attachRequired %v, want true (the chart's exports.perNode)", driverName, drv.Spec.AttachRequired)
	}

	id := nodeGetInfo(t, e)
	if id != nodeID {
		t.Fatalf("NodeGetInfo: node ID %q, want %q", id, nodeID)
	}

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        nodeName,
		Labels:      map[string]string{"kubernetes.io/hostname": nodeName, "kubernetes.io/os": "linux"},
		Annotations: map[string]string{controllerManagedAttach: "true"},
	}}
	node, err = cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	node.Status = corev1.NodeStatus{
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: nodeAddress},
			{Type: corev1.NodeHostName, Address: nodeName},
		},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "the e2e test plays the kubelet", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
	}
	if node, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	csiNode := &storagev1.CSINode{
		ObjectMeta: metav1.ObjectMeta{
			Name: nodeName,
			// As the kubelet makes it: it goes with its Node.
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}},
		},
		Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: driverName, NodeID: id}}},
	}
	if _, err := cs.StorageV1().CSINodes().Create(ctx, csiNode, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("Node %s (InternalIP %s, %s=true) and CSINode with %s node ID %s", nodeName, nodeAddress, controllerManagedAttach, driverName, id)
}

// nodeGetInfo asks the node plugin for its node ID, as the kubelet's plugin
// registration does.
func nodeGetInfo(t *testing.T, e *env) string {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+e.nodeSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	info, err := csi.NewNodeClient(conn).NodeGetInfo(e.ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatalf("NodeGetInfo: %v", err)
	}
	return info.GetNodeId()
}

// startPod creates a pod on the node that uses claim. It never runs (there
// is no kubelet), but the attach-detach controller attaches its volumes
// all the same, as it does before a kubelet mounts them.
func startPod(t *testing.T, e *env, name, claim string) {
	t.Helper()
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "e2e-attach"}},
		Spec: corev1.PodSpec{
			NodeName:                     nodeName, // no scheduler here: bound by hand
			AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.k8s.io/pause:3.10",
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}},
		},
	}
	if _, err := e.kube.cs.CoreV1().Pods(namespace).Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// forceDeletePod deletes a pod at once, as `kubectl delete --force
// --grace-period=0` does: with no kubelet, nothing would ever confirm a
// graceful deletion.
func forceDeletePod(t *testing.T, e *env, name string) {
	t.Helper()
	zero := int64(0)
	if err := e.kube.cs.CoreV1().Pods(namespace).Delete(e.ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
}

// volumeAttachment returns the VolumeAttachment of pv on the node, or nil.
func volumeAttachment(e *env, pv *corev1.PersistentVolume) (*storagev1.VolumeAttachment, error) {
	vas, err := e.kube.cs.StorageV1().VolumeAttachments().List(e.ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i, va := range vas.Items {
		if src := va.Spec.Source.PersistentVolumeName; src != nil && *src == pv.Name && va.Spec.NodeName == nodeName {
			return &vas.Items[i], nil
		}
	}
	return nil, nil
}

// waitAttached waits until the attach-detach controller has made the
// VolumeAttachment of pv on the node and the external-attacher has
// published it (status.attached), and checks what it says.
func waitAttached(t *testing.T, e *env, pv *corev1.PersistentVolume) *storagev1.VolumeAttachment {
	t.Helper()
	var va *storagev1.VolumeAttachment
	if err := eventually(2*time.Minute, func() error {
		var err error
		if va, err = volumeAttachment(e, pv); err != nil {
			return err
		}
		switch {
		case va == nil:
			return fmt.Errorf("no VolumeAttachment of %s on %s yet", pv.Name, nodeName)
		case !va.Status.Attached:
			return fmt.Errorf("VolumeAttachment %s not attached yet; attach error %+v", va.Name, va.Status.AttachError)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- csi-attacher ---\n%s\n--- kube-controller-manager (attach) ---\n%s\n%s", err,
			e.side.attacher.tail(15), e.cluster.kcm.matching(10, "ttach"), e.diag())
	}
	if va.Spec.Attacher != driverName {
		t.Errorf("VolumeAttachment %s: attacher %q, want %q", va.Name, va.Spec.Attacher, driverName)
	}
	// The attacher found the node's CSI node ID in its CSINode.
	if got := va.Annotations[vaNodeIDAnnotation]; got != nodeID {
		t.Errorf("VolumeAttachment %s: published to node ID %q, want %q", va.Name, got, nodeID)
	}
	return va
}

// waitDetached waits until no VolumeAttachment of the PVs is left and their
// exports no longer admit the node.
func waitDetached(t *testing.T, e *env, pvs ...*corev1.PersistentVolume) {
	t.Helper()
	if err := eventually(2*time.Minute, func() error {
		for _, pv := range pvs {
			va, err := volumeAttachment(e, pv)
			if err != nil {
				return err
			}
			if va != nil {
				return fmt.Errorf("VolumeAttachment %s of %s still there (deleting: %t, detach error %+v)",
					va.Name, pv.Name, va.DeletionTimestamp != nil, va.Status.DetachError)
			}
			if _, blocks := e.exportACL(t, pv); len(blocks) > 0 {
				return fmt.Errorf("export of %s still admits %v", pv.Name, blocks)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n--- csi-attacher ---\n%s\n--- kube-controller-manager (detach) ---\n%s\n%s", err,
			e.side.attacher.tail(15), e.cluster.kcm.matching(10, "etach"), e.diag())
	}
}

// clientBlock is one CLIENT block of an export: who, and how.
type clientBlock struct {
	Clients []string
	Access  string
}

// exportACL reads who the export of pv admits from its server's exports
// file (RUN-DIR/ganesha/exports.conf with its includes, what ganesha was
// told to serve):
// whether the export is there at all, and its CLIENT blocks.
func (e *env) exportACL(t *testing.T, pv *corev1.PersistentVolume) (found bool, blocks []clientBlock) {
	t.Helper()
	attrs := pv.Spec.CSI.VolumeAttributes
	srv := e.servers[attrs[ctxServer]]
	data, err := readIncluding(filepath.Join(srv.runDir, "ganesha", "exports.conf"), 0)
	if err != nil {
		t.Fatal(err)
	}
	return parseExportACL(data, attrs[ctxExport])
}

// readIncluding reads a ganesha config file with the files it %includes in
// their place (the exports file includes lists of per-export files).
func readIncluding(path string, depth int) (string, error) {
	if depth > 8 {
		return "", fmt.Errorf("%s: includes nested too deep", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for _, l := range strings.SplitAfter(string(b), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), "%include ")
		if !ok {
			out.WriteString(l)
			continue
		}
		inc, err := readIncluding(strings.Trim(rest, `"`), depth+1)
		if err != nil {
			return "", err
		}
		out.WriteString(inc)
	}
	return out.String(), nil
}

// parseExportACL finds the EXPORT block with this pseudo path in a ganesha
// exports file and returns its CLIENT blocks.
func parseExportACL(conf, pseudo string) (found bool, blocks []clientBlock) {
	value := func(line, key string) (string, bool) {
		rest, ok := strings.CutPrefix(line, key+" = ")
		return strings.Trim(strings.TrimSuffix(rest, ";"), `"`), ok
	}
	var (
		stack   []string
		current []clientBlock
		client  clientBlock
		isOurs  bool
	)
	for _, l := range strings.Split(conf, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasSuffix(l, "{"):
			block := strings.TrimSpace(strings.TrimSuffix(l, "{"))
			stack = append(stack, block)
			switch block {
			case "EXPORT":
				current, isOurs = nil, false
			case "CLIENT":
				client = clientBlock{}
			}
		case l == "}":
			if len(stack) == 0 {
				continue
			}
			block := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch block {
			case "CLIENT":
				current = append(current, client)
			case "EXPORT":
				if isOurs {
					return true, current
				}
			}
		case len(stack) > 0 && stack[len(stack)-1] == "EXPORT":
			if v, ok := value(l, "Pseudo"); ok && v == pseudo {
				isOurs = true
			}
		case len(stack) > 0 && stack[len(stack)-1] == "CLIENT":
			if v, ok := value(l, "Clients"); ok {
				for _, c := range strings.Split(v, ",") {
					client.Clients = append(client.Clients, strings.TrimSpace(c))
				}
			} else if v, ok := value(l, "Access_Type"); ok {
				client.Access = v
			}
		}
	}
	return false, nil
}

// checkACLAdmitsNode checks that the export of pv admits exactly the node's
// address, read-write, and nothing of the wider client network.
func checkACLAdmitsNode(t *testing.T, e *env, pv *corev1.PersistentVolume) {
	t.Helper()
	found, blocks := e.exportACL(t, pv)
	if !found {
		t.Fatalf("no export of %s (%s) in its server's exports file", pv.Name, pv.Spec.CSI.VolumeAttributes[ctxExport])
	}
	want := []clientBlock{{Clients: []string{nodeAddress}, Access: "RW"}}
	if !slices.EqualFunc(blocks, want, func(a, b clientBlock) bool { return slices.Equal(a.Clients, b.Clients) && a.Access == b.Access }) {
		t.Errorf("export of %s admits %+v, want %+v (the node it is published to, and no one else)", pv.Name, blocks, want)
	}
}

// checkACLEmpty checks that the export of pv is there and admits no one.
func checkACLEmpty(t *testing.T, e *env, pv *corev1.PersistentVolume) {
	t.Helper()
	found, blocks := e.exportACL(t, pv)
	if !found {
		t.Fatalf("no export of %s (%s) in its server's exports file", pv.Name, pv.Spec.CSI.VolumeAttributes[ctxExport])
	}
	if len(blocks) > 0 {
		t.Errorf("export of %s admits %+v, want no one (published to no node)", pv.Name, blocks)
	}
}

// controller returns a client of the dots controller's CSI socket (the
// one the sidecars use).
func (e *env) controller(t *testing.T) csi.ControllerClient {
	t.Helper()
	if e.ctrlConn == nil {
		conn, err := grpc.NewClient("unix://"+e.ctrlSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		e.ctrlConn = conn
	}
	return csi.NewControllerClient(e.ctrlConn)
}

// publishedNodes returns the nodes the controller reports pv published to,
// from ControllerGetVolume and from ListVolumes (every page).
func publishedNodes(t *testing.T, e *env, pv *corev1.PersistentVolume) (get, list []string) {
	t.Helper()
	c, id := e.controller(t), pv.Spec.CSI.VolumeHandle
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	g, err := c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		t.Fatalf("ControllerGetVolume %s: %v", id, err)
	}
	if g.GetVolume().GetVolumeId() != id {
		t.Errorf("ControllerGetVolume %s answered volume %q", id, g.GetVolume().GetVolumeId())
	}
	get = g.GetStatus().GetPublishedNodeIds()
	listed, token := false, ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatalf("ListVolumes: more than 100 pages")
		}
		l, err := c.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token, MaxEntries: 5})
		if err != nil {
			t.Fatalf("ListVolumes: %v", err)
		}
		for _, en := range l.GetEntries() {
			if en.GetVolume().GetVolumeId() == id {
				listed, list = true, en.GetStatus().GetPublishedNodeIds()
			}
		}
		if token = l.GetNextToken(); token == "" {
			break
		}
	}
	if !listed {
		t.Fatalf("ListVolumes does not list %s", id)
	}
	return get, list
}

// checkPublished checks that the controller reports pv published to
// exactly want.
func checkPublished(t *testing.T, e *env, pv *corev1.PersistentVolume, want ...string) {
	t.Helper()
	get, list := publishedNodes(t, e, pv)
	if !slices.Equal(get, want) {
		t.Errorf("ControllerGetVolume %s: published to %q, want %q", pv.Spec.CSI.VolumeHandle, get, want)
	}
	if !slices.Equal(list, want) {
		t.Errorf("ListVolumes %s: published to %q, want %q", pv.Spec.CSI.VolumeHandle, list, want)
	}
}

// accessDenied matches what the libnfs tools print when the server refuses
// the client: the MOUNT call (NFSv3) or an operation answering "access".
var accessDenied = regexp.MustCompile(`MNT3ERR_ACCES|MNT3ERR_PERM|NFS3ERR_ACCES|NFS3ERR_PERM|NFS4ERR_ACCESS|NFS4ERR_PERM|[Pp]ermission denied`)

// checkRefused checks that the export of pv refuses this machine
// (127.0.0.1): reading file and writing a new one both fail, and for
// access, not for anything else (a missing file, a wrong port).
func checkRefused(t *testing.T, e *env, pv *corev1.PersistentVolume, file string) {
	t.Helper()
	if got, err := nfsTryRead(e.url(pv, file)); err == nil {
		t.Errorf("read %s from the export of %s, published to no node: got %q, want access denied", file, pv.Name, got)
	} else if !accessDenied.MatchString(err.Error()) {
		t.Errorf("read %s from the export of %s failed, but not for access: %v", file, pv.Name, err)
	} else {
		t.Logf("read of %s refused: %s", pv.Name, deniedLine(err))
	}
	if err := nfsTryWrite(t, e.url(pv, "refused.txt"), []byte("must not land\n")); err == nil {
		t.Errorf("wrote to the export of %s, published to no node: want access denied", pv.Name)
	} else if !accessDenied.MatchString(err.Error()) {
		t.Errorf("write to the export of %s failed, but not for access: %v", pv.Name, err)
	} else {
		t.Logf("write to %s refused: %s", pv.Name, deniedLine(err))
	}
}

// deniedLine is the part of a libnfs tool's output that says access was
// denied.
func deniedLine(err error) string {
	for _, l := range strings.Split(err.Error(), "\n") {
		if accessDenied.MatchString(l) {
			if i := strings.Index(l, "Failed to mount"); i >= 0 {
				l = l[i:]
			}
			return strings.TrimSpace(l)
		}
	}
	return err.Error()
}
