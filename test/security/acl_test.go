//go:build integration

package security

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/dots-csi/dots/internal/libnfs"
	"github.com/dots-csi/dots/internal/netns"
	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/serverenv"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/server"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// aclServer is a storage server on a test network, its exports in
// per-node mode, serving NFSv3 (libnfs writes need it on zfs-fuse) and v4.
type aclServer struct {
	*serverenv.Server
	net  *netns.Net
	ctrl csi.ControllerClient
}

func startACLServer(t *testing.T, name string) *aclServer {
	t.Helper()
	n := netns.New(t)
	testenv.EnsureRpcbind(t)
	mountPort := testenv.FreeTCPPorts(t, 1)[0]
	srv := serverenv.Start(t, "dotsa", name, func(c *server.Config) {
		c.ExportAccess = string(server.AccessPerNode)
		c.NFS.BindAddr = n.Host.String()
		c.NFS.Clients = []string{n.Prefix.String()}
		c.NFS.Protocols, c.NFS.MountPort = []int{3, 4}, mountPort
		c.NFS.Squash = nfs.SquashNone
		c.NFS.GracePeriod = 2 * time.Second
	})
	ctrl, _ := srv.Client()
	return &aclServer{Server: srv, net: n, ctrl: ctrl}
}

// client is libnfs in node's namespace; uid and gid nil send root's.
func (s *aclServer) client(node *netns.Node, uid, gid *uint32) libnfs.Client {
	return libnfs.Client{Host: s.net.Host.String(), Port: s.Config.NFS.NFSPort, MountPort: s.Config.NFS.MountPort,
		Version: 3, Netns: node.Name, UID: uid, GID: gid}
}

func (s *aclServer) create(t *testing.T, name string, params map[string]string) *csi.Volume {
	t.Helper()
	resp, err := s.ctrl.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: name, Parameters: params,
		VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)},
		CapacityRange:      &csi.CapacityRange{RequiredBytes: 16 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetVolume()
}

func (s *aclServer) publish(t *testing.T, vol *csi.Volume, node *netns.Node) {
	t.Helper()
	if _, err := s.ctrl.ControllerPublishVolume(context.Background(), &csi.ControllerPublishVolumeRequest{
		VolumeId: vol.GetVolumeId(), NodeId: nodeID(node),
		VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}); err != nil {
		t.Fatal(err)
	}
}

func (s *aclServer) unpublish(t *testing.T, vol *csi.Volume, node *netns.Node) {
	t.Helper()
	if _, err := s.ctrl.ControllerUnpublishVolume(context.Background(), &csi.ControllerUnpublishVolumeRequest{
		VolumeId: vol.GetVolumeId(), NodeId: nodeID(node)}); err != nil {
		t.Fatal(err)
	}
}

func nodeID(n *netns.Node) string {
	return api.NodeID{Name: "node-" + n.Addr.String(), Addresses: []netip.Addr{n.Addr}}.String()
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
}

func exportOf(v *csi.Volume) string { return v.GetVolumeContext()[api.ContextExport] }

// read reads a file through the export, waiting out a grace period.
func read(ctx context.Context, c libnfs.Client, v *csi.Volume, file string) ([]byte, error) {
	for {
		b, err := c.ReadFile(ctx, exportOf(v), file)
		if !errors.Is(err, libnfs.ErrGrace) || ctx.Err() != nil {
			return b, err
		}
	}
}

// refused checks that node cannot read the volume: the server says no.
func refused(t *testing.T, s *aclServer, node *netns.Node, v *csi.Volume, what string) {
	t.Helper()
	_, err := read(context.Background(), s.client(node, nil, nil), v, "probe")
	if !errors.Is(err, libnfs.ErrAccess) {
		t.Fatalf("%s: node %s read: %v, want access denied", what, node.Addr, err)
	}
}

// TestExportsAdmitOnlyPublishedNodes: a volume's export admits the nodes
// it is published to, from their own addresses, and no one else; after an
// unpublish the node is refused too; after a server restart the list holds.
func TestExportsAdmitOnlyPublishedNodes(t *testing.T) {
	s := startACLServer(t, "acl-server")
	a, b := s.net.AddNode("a"), s.net.AddNode("b")
	ctx := context.Background()
	v := s.create(t, "acl-1", nil)
	if err := os.WriteFile(filepath.Join(v.GetVolumeContext()[api.ContextLocalPath], "probe"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	refusals := 0
	refused(t, s, a, v, "before any publish")
	refusals++

	start := time.Now()
	s.publish(t, v, a)
	got, err := read(ctx, s.client(a, nil, nil), v, "probe")
	if err != nil || string(got) != "data" {
		t.Fatalf("published node reads %q, %v", got, err)
	}
	publishToRead := time.Since(start)
	// Baseline in the same run: the same read once published.
	start = time.Now()
	if _, err := read(ctx, s.client(a, nil, nil), v, "probe"); err != nil {
		t.Fatal(err)
	}
	plainRead := time.Since(start)
	if err := s.client(a, nil, nil).WriteFile(ctx, exportOf(v), "from-a", []byte("a")); err != nil {
		t.Fatalf("published node writes: %v", err)
	}
	refused(t, s, b, v, "another node")
	refusals++

	s.unpublish(t, v, a)
	refused(t, s, a, v, "after unpublish")
	refusals++

	s.publish(t, v, a)
	s.Server.Stop()
	s.Server.Start()
	poll.Until(t, 30*time.Second, "the published node reads after a server restart", func() error {
		got, err := read(ctx, s.client(a, nil, nil), v, "from-a")
		if err == nil && string(got) != "a" {
			err = fmt.Errorf("read %q", got)
		}
		return err
	})
	refused(t, s, b, v, "another node after a restart")
	refusals++
	fmt.Printf("acl: per-node ok refused=%d admitted=2 restart_kept=1 publish_to_read_ms=%d read_ms=%d publish_cost_x=%.1f\n",
		refusals, publishToRead.Milliseconds(), plainRead.Milliseconds(), publishToRead.Seconds()/plainRead.Seconds())
}

func ptr(n uint32) *uint32 { return &n }

func ownerOf(t *testing.T, v *csi.Volume, file string) (uid, gid uint32) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(v.GetVolumeContext()[api.ContextLocalPath], file))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// TestSquash: root squashed to the anonymous user, all users squashed to
// the volume's anonymous ids; the root directory of a squashed volume lets
// the anonymous user and, with gid, a pod's fsGroup write.
func TestSquash(t *testing.T) {
	s := startACLServer(t, "squash-server")
	node := s.net.AddNode("n")
	ctx := context.Background()

	rootSq := s.create(t, "root-squash", map[string]string{"squash": "root", "gid": "2000"})
	s.publish(t, rootSq, node)
	// A pod with runAsUser 1000 and fsGroup 2000.
	if err := s.client(node, ptr(1000), ptr(2000)).WriteFile(ctx, exportOf(rootSq), "pod", []byte("x")); err != nil {
		t.Fatalf("fsGroup writer: %v", err)
	}
	if u, g := ownerOf(t, rootSq, "pod"); u != 1000 || g != 2000 {
		t.Errorf("the fsGroup writer's file is %d:%d, want 1000:2000", u, g)
	}
	if err := s.client(node, ptr(0), ptr(0)).WriteFile(ctx, exportOf(rootSq), "root", []byte("x")); err != nil {
		t.Fatalf("root writer: %v", err)
	}
	if u, _ := ownerOf(t, rootSq, "root"); u != api.DefaultAnonID {
		t.Errorf("root's file is owned by %d, want the anonymous %d", u, api.DefaultAnonID)
	}
	err := s.client(node, ptr(1001), ptr(1001)).WriteFile(ctx, exportOf(rootSq), "stranger", []byte("x"))
	if !errors.Is(err, libnfs.ErrAccess) {
		t.Errorf("a writer outside the group: %v, want access denied", err)
	}

	allSq := s.create(t, "all-squash", map[string]string{"squash": "all", "anonUID": "3000", "anonGID": "3000"})
	s.publish(t, allSq, node)
	for _, uid := range []uint32{0, 1000} {
		f := "by-" + strconv.Itoa(int(uid))
		if err := s.client(node, ptr(uid), ptr(uid)).WriteFile(ctx, exportOf(allSq), f, []byte("x")); err != nil {
			t.Fatalf("uid %d writer: %v", uid, err)
		}
		if u, g := ownerOf(t, allSq, f); u != 3000 || g != 3000 {
			t.Errorf("uid %d's file is %d:%d, want 3000:3000", uid, u, g)
		}
	}
	fmt.Println("squash: root+all ok fsgroup_write=ok root_as=65534 all_as=3000 stranger=refused")
}
