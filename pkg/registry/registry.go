// Package registry keeps the cluster controller's view of the storage
// servers: a gRPC connection to each, and their health and capacity, kept
// current by polling. Servers come and go with the discovery source.
package registry

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/discovery"
)

// Member is one storage server and the clients to reach it.
type Member struct {
	discovery.Server
	Controller csi.ControllerClient
	Identity   csi.IdentityClient
	conn       *grpc.ClientConn
	// missingSince is when discovery stopped listing it (zero while
	// listed); guarded by the registry's lock.
	missingSince time.Time

	mu          sync.Mutex
	err         error // last probe result; nil when healthy
	available   int64
	provisioned int64
	volumes     int
	pool        api.PoolInfo // from the server's manifest; zero when it says nothing
	checked     time.Time
}

// Status is a snapshot of a member's last probe.
type Status struct {
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
	// Pool and PoolHealth name the server's pool and its state (ONLINE,
	// DEGRADED, ...); Size and Used are its root dataset's used +
	// available and used, exact, as read at the last probe.
	Pool        string    `json:"pool,omitempty"`
	PoolHealth  string    `json:"poolHealth,omitempty"`
	Size        int64     `json:"sizeBytes"`
	Used        int64     `json:"usedBytes"`
	Available   int64     `json:"availableBytes"`   // free bytes in the pool
	Provisioned int64     `json:"provisionedBytes"` // sum of the volumes' capacities (may exceed the pool: thin)
	Volumes     int       `json:"volumes"`
	Checked     time.Time `json:"checked"` // when the last probe ended
}

// Status returns the member's last probe result.
func (m *Member) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{Healthy: m.err == nil && !m.checked.IsZero(), Available: m.available, Provisioned: m.provisioned, Volumes: m.volumes, Checked: m.checked,
		Pool: m.pool.Pool, PoolHealth: m.pool.Health, Size: m.pool.Size, Used: m.pool.Used}
	if m.err != nil {
		st.Error = m.err.Error()
	} else if m.checked.IsZero() {
		st.Error = "not probed yet"
	}
	return st
}

// AddProvisioned counts a volume just created on the member; the next probe
// replaces the sum with what the server reports.
func (m *Member) AddProvisioned(bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.provisioned += bytes
}

// Options tune the registry.
type Options struct {
	Interval     time.Duration // between probes
	ProbeTimeout time.Duration // for each server's probe
	// ForgetAfter is how long a server discovery no longer lists is kept.
	// A DNS hiccup must not make a server's volumes look deleted (NotFound)
	// or let their deletes succeed without touching them.
	ForgetAfter time.Duration
}

// Registry tracks the members.
type Registry struct {
	source  discovery.Source
	creds   credentials.TransportCredentials
	opts    Options
	metrics *metrics

	mu      sync.RWMutex
	members map[string]*Member
	now     func() time.Time
}

// New returns a registry fed by source that dials servers with creds
// (mutual TLS from pkg/mtls; each new connection takes the current
// certificate files); reg may be nil (no metrics).
func New(source discovery.Source, creds credentials.TransportCredentials, opts Options, reg prometheus.Registerer) *Registry {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = 5 * time.Second
	}
	if opts.ForgetAfter <= 0 {
		opts.ForgetAfter = 5 * time.Minute
	}
	return &Registry{source: source, creds: creds, opts: opts, metrics: newMetrics(reg), members: map[string]*Member{}, now: time.Now}
}

// Run refreshes until ctx is done, then closes every connection.
func (r *Registry) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		r.Refresh(ctx)
		select {
		case <-ctx.Done():
			r.close()
			return
		case <-t.C:
		}
	}
}

// Refresh syncs the members with the discovery source and probes each.
func (r *Registry) Refresh(ctx context.Context) {
	if servers, err := r.source.Servers(ctx); err != nil {
		// Keep the members we know: a flaky source must not drop servers.
		klog.ErrorS(err, "Listing storage servers failed; keeping the known ones")
	} else {
		r.sync(servers)
	}
	var wg sync.WaitGroup
	for _, m := range r.List() {
		wg.Add(1)
		go func(m *Member) {
			defer wg.Done()
			r.probe(ctx, m)
		}(m)
	}
	wg.Wait()
}

func (r *Registry) sync(servers []discovery.Server) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, s := range servers {
		seen[s.Name] = true
		if old, ok := r.members[s.Name]; ok && old.Server == s {
			old.missingSince = time.Time{}
			continue
		} else if ok {
			old.conn.Close()
		}
		// A short reconnect backoff: a restarted server must be usable
		// again within seconds, not after gRPC's default two minutes.
		conn, err := grpc.NewClient("passthrough:///"+s.APIAddress, grpc.WithTransportCredentials(r.creds),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second}, MinConnectTimeout: 5 * time.Second}))
		if err != nil {
			klog.ErrorS(err, "Connecting to storage server", "server", s.Name, "address", s.APIAddress)
			continue
		}
		r.members[s.Name] = &Member{Server: s, conn: conn,
			Controller: csi.NewControllerClient(conn), Identity: csi.NewIdentityClient(conn)}
		klog.InfoS("Storage server added", "server", s.Name, "api", s.APIAddress, "nfs", s.NFSAddress)
	}
	now := r.now()
	for name, m := range r.members {
		switch {
		case seen[name]:
		case m.missingSince.IsZero():
			m.missingSince = now
			klog.InfoS("Storage server no longer discovered; keeping it for a while", "server", name, "forgetAfter", r.opts.ForgetAfter)
		case now.Sub(m.missingSince) >= r.opts.ForgetAfter:
			m.conn.Close()
			delete(r.members, name)
			r.metrics.forget(name)
			klog.InfoS("Storage server removed", "server", name)
		}
	}
}

// ProbeNow reads one server's health and free space at once (after it
// refused a create for lack of space, say), instead of at the next round.
func (r *Registry) ProbeNow(ctx context.Context, m *Member) { r.probe(ctx, m) }

func (r *Registry) probe(ctx context.Context, m *Member) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.ProbeTimeout)
	defer cancel()
	var available, provisioned int64
	var volumes int
	// The pool's state and space come with the server's identity; a server
	// that gives none (an older one) is probed all the same.
	pool := m.poolInfo(ctx)
	// The probe waits for a connection (within ProbeTimeout) instead of
	// failing at once, so a server that just came back is seen as up.
	_, err := m.Identity.Probe(ctx, &csi.ProbeRequest{}, grpc.WaitForReady(true))
	if err == nil {
		var c *csi.GetCapacityResponse
		if c, err = m.Controller.GetCapacity(ctx, &csi.GetCapacityRequest{}); err == nil {
			available = c.GetAvailableCapacity()
		}
	}
	if err == nil {
		volumes, provisioned, err = countVolumes(ctx, m.Controller)
	}
	m.mu.Lock()
	was := m.err == nil && !m.checked.IsZero()
	m.err, m.checked = err, time.Now()
	if err == nil {
		m.available, m.provisioned, m.volumes = available, provisioned, volumes
	}
	if pool.Pool != "" {
		m.pool = pool // its state, even when the probe failed because of it
	}
	m.mu.Unlock()
	if was != (err == nil) {
		if err != nil {
			klog.ErrorS(err, "Storage server is down", "server", m.Name)
		} else {
			klog.InfoS("Storage server is up", "server", m.Name, "available", available)
		}
	}
	r.metrics.observe(m.Name, m.Status())
}

// poolInfo reads the pool figures of the server's manifest (see
// api.PoolInfo); zero when it has none or does not answer.
func (m *Member) poolInfo(ctx context.Context) api.PoolInfo {
	r, err := m.Identity.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		klog.V(2).InfoS("No pool figures from the server", "server", m.Name, "err", err)
		return api.PoolInfo{}
	}
	p, ok := api.ParsePoolInfo(r.GetManifest())
	if !ok {
		return api.PoolInfo{Pool: p.Pool, Health: p.Health}
	}
	return p
}

// countVolumes counts volumes and sums their capacity (committed bytes).
func countVolumes(ctx context.Context, c csi.ControllerClient) (n int, committed int64, err error) {
	token := ""
	for {
		resp, err := c.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token, MaxEntries: 1000})
		if err != nil {
			return 0, 0, err
		}
		for _, e := range resp.GetEntries() {
			n++
			committed += e.GetVolume().GetCapacityBytes()
		}
		if token = resp.GetNextToken(); token == "" {
			return n, committed, nil
		}
	}
}

// Get returns the named member.
func (r *Registry) Get(name string) (*Member, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.members[name]
	return m, ok
}

// List returns all members sorted by name.
func (r *Registry) List() []*Member {
	r.mu.RLock()
	out := make([]*Member, 0, len(r.members))
	for _, m := range r.members {
		out = append(out, m)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// AnyHealthy reports whether at least one server answered its last probe.
func (r *Registry) AnyHealthy() bool {
	for _, m := range r.List() {
		if m.Status().Healthy {
			return true
		}
	}
	return false
}

func (r *Registry) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.members {
		m.conn.Close()
	}
}

// ServerView is one server as /servers and the client show it.
type ServerView struct {
	discovery.Server
	Status
}

// Views returns every member with its last probe.
func (r *Registry) Views() []ServerView {
	var out []ServerView
	for _, m := range r.List() {
		out = append(out, ServerView{Server: m.Server, Status: m.Status()})
	}
	return out
}

// FreshWithin is how old a member's last probe may be when /servers
// answers; older ones are probed first.
const FreshWithin = 2 * time.Second

// ProbeStale probes, in parallel, every member whose last probe ended more
// than maxAge ago, and returns when all have answered (or ProbeTimeout
// passed).
func (r *Registry) ProbeStale(ctx context.Context, maxAge time.Duration) {
	var wg sync.WaitGroup
	for _, m := range r.List() {
		if st := m.Status(); !st.Checked.IsZero() && time.Since(st.Checked) <= maxAge {
			continue
		}
		wg.Add(1)
		go func(m *Member) {
			defer wg.Done()
			r.probe(ctx, m)
		}(m)
	}
	wg.Wait()
}

// ServeHTTP writes Views as JSON: fresh, each server probed unless its last
// probe ended within FreshWithin (?cached=true answers from the last
// probes at once).
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Query().Get("cached") != "true" {
		r.ProbeStale(req.Context(), FreshWithin)
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(r.Views()); err != nil {
		klog.ErrorS(err, "Writing /servers")
	}
}
