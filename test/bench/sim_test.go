//go:build integration

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dots-csi/dots/internal/memserver"
	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/mtls"
	"github.com/dots-csi/dots/pkg/registry"
)

// simPage is the page size of the simulated listings.
const simPage = 1000

// simCluster is the real controller (its own process) over in-memory
// servers in this process, each on its own mutual-TLS port.
type simCluster struct {
	t       *testing.T
	dir     string
	servers []*memserver.Server
	direct  []csi.ControllerClient // this process's own connections to each
	idents  []csi.IdentityClient
	file    string // the controller's --servers-file
	ctl     *proc
	cc      csi.ControllerClient // the controller's CSI socket
	admin   *http.Client
}

func newSimCluster(t *testing.T, n int) *simCluster {
	t.Helper()
	c := &simCluster{t: t, dir: t.TempDir()}
	pki := testenv.PKI(t)
	screds, err := mtls.ServerCredentials(pki.ServerOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ccreds := testenv.ClientCreds(t)
	var list []discovery.Server
	for i := range n {
		s := memserver.New(fmt.Sprintf("mem-%03d", i), 1<<50)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Serve(lis, screds))
		conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(ccreds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		c.servers = append(c.servers, s)
		c.direct = append(c.direct, csi.NewControllerClient(conn))
		c.idents = append(c.idents, csi.NewIdentityClient(conn))
		list = append(list, discovery.Server{Name: s.Name(), APIAddress: lis.Addr().String(), NFSAddress: "10.0.0.1"})
	}
	b, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	c.file = filepath.Join(c.dir, "servers.json")
	if err := os.WriteFile(c.file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// fill gives every server n volumes.
func (c *simCluster) fill(n int) {
	var wg sync.WaitGroup
	for _, s := range c.servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.Fill("pvc", n, 1<<30) }()
	}
	wg.Wait()
}

func (c *simCluster) stats() (sum memserver.Stats) {
	for _, s := range c.servers {
		st := s.Stats()
		sum.Probes += st.Probes
		sum.Infos += st.Infos
		sum.Lists += st.Lists
		sum.Listed += st.Listed
		sum.SnapshotLists += st.SnapshotLists
		sum.Creates += st.Creates
	}
	return sum
}

// startController runs `dots controller` over the servers and returns once
// it serves and has imported the placements of every server (its last
// step per server is a ListSnapshots). Probes run only when asked
// (/servers), so rounds are measured, not overlapped.
func (c *simCluster) startController(name string) time.Duration {
	t := c.t
	t.Helper()
	before := c.stats().SnapshotLists
	sock := filepath.Join(c.dir, name+".sock")
	adminSock := filepath.Join(c.dir, name+"-admin.sock")
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ids := csi.NewIdentityClient(conn)
	o := testenv.PKI(t).ClientOptions()
	t0 := time.Now()
	c.ctl = startProc(t, c.dir, name, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := ids.Probe(ctx, &csi.ProbeRequest{})
		if status.Code(err) == codes.Unavailable {
			return err // not serving yet
		}
		return nil // serving: ready, or not (reported by the figures)
	}, "controller", "--endpoint", "unix://"+sock, "--http-address", "127.0.0.1:0", "--admin-socket", adminSock,
		"--servers-file", c.file, "--placements", "memory", "--probe-interval", "1h", "--reconcile-interval", "1h",
		"--tls-cert-file", o.CertFile, "--tls-key-file", o.KeyFile, "--tls-ca-file", o.CAFile)
	c.cc = csi.NewControllerClient(conn)
	c.admin = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", adminSock)
	}}}
	if err := poll.Wait(5*time.Minute, func() error {
		if n := c.stats().SnapshotLists - before; n < int64(len(c.servers)) {
			return fmt.Errorf("placements imported from %d of %d servers", n, len(c.servers))
		}
		return nil
	}); err != nil {
		t.Errorf("controller %s: %v", name, err)
	}
	return time.Since(t0)
}

// healthRound asks /servers for fresh figures: the registry probes every
// server whose last probe is older than registry.FreshWithin, all at once.
func (c *simCluster) healthRound() (time.Duration, error) {
	// The registry answers from its last round while that round is
	// younger than FreshWithin, a rule of age, not an event: waiting out
	// that age is what makes the next /servers a probe round, which is
	// what is measured.
	time.Sleep(registry.FreshWithin)
	t0 := time.Now()
	resp, err := c.admin.Get("http://admin/servers")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var views []registry.ServerView
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &views); err != nil {
		return 0, fmt.Errorf("/servers: %v: %s", err, b)
	}
	d := time.Since(t0)
	down := 0
	for _, v := range views {
		if !v.Healthy {
			down++
		}
	}
	if down > 0 {
		return d, fmt.Errorf("%d of %d servers marked down", down, len(views))
	}
	return d, nil
}

// directRound is the O(1) health check the controller could make: each
// server's manifest (pool figures and counts) and Probe, all at once.
func (c *simCluster) directRound() time.Duration {
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range c.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := c.idents[i].GetPluginInfo(ctx, &csi.GetPluginInfoRequest{}); err != nil {
				c.t.Error(err)
			}
			if _, err := c.idents[i].Probe(ctx, &csi.ProbeRequest{}); err != nil {
				c.t.Error(err)
			}
		}()
	}
	wg.Wait()
	return time.Since(t0)
}

// listPass pages through every volume with list; it returns the time and
// the count.
func listPass(list func(ctx context.Context, token string) ([]*csi.ListVolumesResponse_Entry, string, error)) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	n := 0
	for token := ""; ; {
		es, next, err := list(ctx, token)
		if err != nil {
			return 0, n, err
		}
		n += len(es)
		if token = next; token == "" {
			return time.Since(t0), n, nil
		}
	}
}

func (c *simCluster) controllerPass() (time.Duration, int, error) {
	return listPass(func(ctx context.Context, token string) ([]*csi.ListVolumesResponse_Entry, string, error) {
		r, err := c.cc.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token, MaxEntries: simPage})
		return r.GetEntries(), r.GetNextToken(), err
	})
}

// directPass is the same walk straight over the servers, one after the
// other: what a pass costs the servers and the wire, without the
// controller.
func (c *simCluster) directPass() (time.Duration, int, error) {
	var total time.Duration
	n := 0
	for _, cc := range c.direct {
		d, k, err := listPass(func(ctx context.Context, token string) ([]*csi.ListVolumesResponse_Entry, string, error) {
			r, err := cc.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token, MaxEntries: simPage})
			return r.GetEntries(), r.GetNextToken(), err
		})
		if err != nil {
			return 0, n, err
		}
		total += d
		n += k
	}
	return total, n, nil
}
