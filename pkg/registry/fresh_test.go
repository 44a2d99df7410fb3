package registry

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"path"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/mtls"
)

// poolServer is a storage server whose pool figures the test sets, over
// real gRPC with mutual TLS, counting the calls it answers by method.
type poolServer struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	mu    sync.Mutex
	info  api.PoolInfo
	extra map[string]string // manifest keys beyond the pool's
	calls map[string]int    // by method name: "Probe", "ListVolumes", ...
}

func (p *poolServer) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]string{}
	if p.info.Pool != "" {
		p.info.Manifest(m)
	}
	for k, v := range p.extra {
		m[k] = v
	}
	return &csi.GetPluginInfoResponse{Name: "dots.csi.dev", Manifest: m}, nil
}

func (p *poolServer) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

func (p *poolServer) GetCapacity(context.Context, *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &csi.GetCapacityResponse{AvailableCapacity: p.info.Available}, nil
}

func (p *poolServer) ListVolumes(context.Context, *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	return &csi.ListVolumesResponse{Entries: []*csi.ListVolumesResponse_Entry{{Volume: &csi.Volume{VolumeId: "v", CapacityBytes: 5}}}}, nil
}

func (p *poolServer) set(used int64, health string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.info = api.PoolInfo{Pool: "tank", Health: health, Size: 1000, Used: used, Available: 1000 - used, ReadAt: time.Now(),
		HasCounts: true, Volumes: 7, Snapshots: 2, Provisioned: 3000}
}

// update changes the figures the manifest carries.
func (p *poolServer) update(f func(*api.PoolInfo)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.info)
}

func (p *poolServer) count(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[method]
}

// takeCalls returns the calls answered since the last takeCalls.
func (p *poolServer) takeCalls() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls
	p.calls = map[string]int{}
	return c
}

func (p *poolServer) countCall(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	p.mu.Lock()
	p.calls[path.Base(info.FullMethod)]++
	p.mu.Unlock()
	return h(ctx, req)
}

func startPoolServer(t *testing.T, dir string) (*poolServer, string) {
	t.Helper()
	b, err := mtls.EnsureBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := mtls.ServerCredentials(b.ServerOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &poolServer{calls: map[string]int{}}
	g := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(p.countCall))
	csi.RegisterIdentityServer(g, p)
	csi.RegisterControllerServer(g, p)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return p, lis.Addr().String()
}

// newPoolRegistry returns a pool server and a registry of it alone (as
// "s0"), not probed yet.
func newPoolRegistry(t *testing.T) (*poolServer, *Registry) {
	t.Helper()
	dir := t.TempDir()
	srv, addr := startPoolServer(t, dir)
	b, err := mtls.EnsureBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := mtls.ClientCredentials(b.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	r := New(discovery.Static{{Name: "s0", APIAddress: addr, NFSAddress: "10.0.0.1"}}, creds, Options{Interval: time.Hour}, nil)
	t.Cleanup(r.close)
	return srv, r
}

// TestServersAreFresh: /servers probes a server whose last probe is older
// than FreshWithin before it answers, so what it shows was read at the
// question (not at the last periodic round); within FreshWithin, or with
// ?cached=true, it answers from memory.
func TestServersAreFresh(t *testing.T) {
	srv, r := newPoolRegistry(t)
	srv.set(100, "ONLINE")
	r.Refresh(context.Background())

	get := func(query string) Status {
		t.Helper()
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest("GET", "/servers"+query, nil))
		var views []ServerView
		if err := json.Unmarshal(rec.Body.Bytes(), &views); err != nil || len(views) != 1 {
			t.Fatalf("/servers: %v %s", err, rec.Body.String())
		}
		return views[0].Status
	}
	// Changed since the last probe, which is recent: the cached answer.
	srv.set(600, "DEGRADED")
	if st := get(""); st.Used != 100 || srv.count("Probe") != 1 {
		t.Fatalf("within FreshWithin: used %d, probes %d", st.Used, srv.count("Probe"))
	}
	// Make the last probe old: /servers probes again first.
	m, _ := r.Get("s0")
	m.mu.Lock()
	m.checked = time.Now().Add(-time.Minute)
	m.mu.Unlock()
	if st := get("?cached=true"); st.Used != 100 || srv.count("Probe") != 1 {
		t.Fatalf("?cached=true probed: used %d, probes %d", st.Used, srv.count("Probe"))
	}
	st := get("")
	if srv.count("Probe") != 2 || st.Used != 600 || st.Size != 1000 || st.Available != 400 || st.PoolHealth != "DEGRADED" ||
		st.Pool != "tank" || st.Volumes != 7 || st.Snapshots != 2 || st.Provisioned != 3000 || !st.CountsKnown || time.Since(st.Checked) > FreshWithin {
		t.Fatalf("after a stale probe: %+v (probes %d)", st, srv.count("Probe"))
	}
}
