package driver

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/registry"
	"github.com/dots-csi/dots/pkg/server"
	"github.com/dots-csi/dots/pkg/zfs"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testServer runs a real storage server (zfs-fuse pool, ganesha) in this
// process, restartable on the same pool.
type testServer struct {
	t      *testing.T
	cfg    server.Config
	api    string
	cancel context.CancelFunc
	done   chan error
}

func freePort(t *testing.T) int { return testenv.FreeTCPPorts(t, 1)[0] }

func newTestServer(t *testing.T, name string) *testServer {
	dir := t.TempDir()
	api := "127.0.0.1:" + strconv.Itoa(freePort(t))
	pool := fmt.Sprintf("dotsc-%s-%d", name[len(name)-1:], time.Now().UnixNano()%1e9)
	s := &testServer{t: t, api: api, cfg: server.Config{
		Name: name, Endpoint: "tcp://" + api, HTTPAddress: "127.0.0.1:0", RunDir: filepath.Join(dir, "run"),
		DefaultVolumeSize: "64Mi", Pool: pool, Vdevs: []string{filepath.Join(dir, "pool.img")}, CreatePool: true,
		PoolFileSize: "1Gi", MountRoot: filepath.Join(dir, "mnt"), ZFSCLI: string(zfs.CLIAuto),
		NFS: nfs.GaneshaConfig{NFSPort: freePort(t), BindAddr: "127.0.0.1", Protocols: []int{4}, MinorVersions: []int{0, 1, 2}, Clients: []string{"127.0.0.0/8"}},
	}}
	t.Cleanup(func() {
		s.stop()
		if err := zfs.DestroyPoolIfExists(context.Background(), pool); err != nil {
			t.Errorf("destroying pool %s: %v", pool, err)
		}
	})
	s.start()
	return s
}

func (s *testServer) start() {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	ready := make(chan struct{})
	go func() { s.done <- server.Run(ctx, s.cfg, func(server.Running) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-s.done:
		s.t.Fatalf("server %s did not start: %v", s.cfg.Name, err)
	case <-time.After(2 * time.Minute):
		s.t.Fatalf("server %s not ready in 2 minutes", s.cfg.Name)
	}
}

func (s *testServer) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Errorf("server %s: %v", s.cfg.Name, err)
	}
	s.cancel = nil
}

func (s *testServer) discovery() discovery.Server {
	return discovery.Server{Name: s.cfg.Name, APIAddress: s.api, NFSAddress: "127.0.0.1", NFSPort: s.cfg.NFS.NFSPort}
}

func mountCaps() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}
}

// TestServerDown: with one server stopped, calls that need it answer
// Unavailable, the others still work, and the restarted server is picked up
// again with its volumes.
func TestServerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("needs zfs-fuse and ganesha")
	}
	a, b := newTestServer(t, "srv-a"), newTestServer(t, "srv-b")
	reg := registry.New(discovery.Static{a.discovery(), b.discovery()}, registry.Options{ProbeTimeout: 2 * time.Second}, nil)
	ctx := context.Background()
	reg.Refresh(ctx)
	c, err := NewControllerServer(reg, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	create := func(name, pin string) (*csi.CreateVolumeResponse, error) {
		p := map[string]string{}
		if pin != "" {
			p["server"] = pin
		}
		return c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountCaps(), Parameters: p,
			CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20}})
	}
	va, err := create("vol-a", "srv-a")
	if err != nil {
		t.Fatal(err)
	}
	vb, err := create("vol-b", "srv-b")
	if err != nil {
		t.Fatal(err)
	}
	if got := vb.GetVolume().GetVolumeId(); got != "srv-b/vol-b" {
		t.Fatalf("pinned volume id = %q, want srv-b/vol-b", got)
	}

	b.stop()
	reg.Refresh(ctx)
	wantCode := func(what string, err error, code codes.Code) {
		t.Helper()
		if status.Code(err) != code {
			t.Errorf("%s: code %v (%v), want %v", what, status.Code(err), err, code)
		}
	}
	_, err = c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: vb.GetVolume().GetVolumeId()})
	wantCode("get a volume of the stopped server", err, codes.Unavailable)
	_, err = create("vol-b2", "srv-b")
	wantCode("create pinned to the stopped server", err, codes.Unavailable)
	_, err = c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vb.GetVolume().GetVolumeId()})
	wantCode("delete on the stopped server", err, codes.Unavailable)
	_, err = c.ListVolumes(ctx, &csi.ListVolumesRequest{})
	wantCode("list volumes with a server down", err, codes.Unavailable)

	_, err = c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: va.GetVolume().GetVolumeId()})
	wantCode("get a volume of the running server", err, codes.OK)
	placed, err := create("vol-c", "")
	wantCode("create with one server up", err, codes.OK)
	if err == nil && placed.GetVolume().GetVolumeId() != "srv-a/vol-c" {
		t.Errorf("placed on %q, want the running server srv-a", placed.GetVolume().GetVolumeId())
	}
	capResp, err := c.GetCapacity(ctx, &csi.GetCapacityRequest{})
	wantCode("capacity with one server up", err, codes.OK)
	if capResp.GetAvailableCapacity() <= 0 {
		t.Errorf("capacity with one server up = %d, want > 0", capResp.GetAvailableCapacity())
	}

	b.start()
	reg.Refresh(ctx)
	if st := mustMember(t, reg, "srv-b").Status(); !st.Healthy {
		t.Fatalf("restarted server not healthy: %+v", st)
	}
	got, err := c.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: vb.GetVolume().GetVolumeId()})
	wantCode("get the volume after the restart", err, codes.OK)
	if err == nil && got.GetVolume().GetCapacityBytes() != 32<<20 {
		t.Errorf("capacity after restart = %d, want %d", got.GetVolume().GetCapacityBytes(), 32<<20)
	}
	list, err := c.ListVolumes(ctx, &csi.ListVolumesRequest{})
	wantCode("list after the restart", err, codes.OK)
	if n := len(list.GetEntries()); n != 3 {
		t.Errorf("listed %d volumes after the restart, want 3", n)
	}
}

func mustMember(t *testing.T, reg *registry.Registry, name string) *registry.Member {
	t.Helper()
	m, ok := reg.Get(name)
	if !ok {
		t.Fatalf("no member %s", name)
	}
	return m
}
