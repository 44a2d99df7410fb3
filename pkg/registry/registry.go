// Package registry keeps the cluster controller's view of the storage
// servers: a gRPC connection to each, and their health, space and counts,
// kept current by a summary probe of each every round (its manifest and
// Probe: no listing, so a round costs the same at 10 or 10,000 volumes a
// server) and by the controller's accounting of what it creates and
// deletes between rounds (Member.Account). Servers come and go with the
// discovery source.
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

// Options tune the registry.
type Options struct {
	Interval     time.Duration // between probes
	ProbeTimeout time.Duration // for each server's probe
	// ForgetAfter is how long a server discovery no longer lists is kept.
	// A DNS hiccup must not make a server's volumes look deleted (NotFound)
	// or let their deletes succeed without touching them.
	ForgetAfter time.Duration
	// Replication makes a member's replication client on its connection
	// (pkg/replication's); nil leaves Member.Replication nil.
	Replication func(s discovery.Server, conn grpc.ClientConnInterface) api.ReplicationServer
}

// Registry tracks the members.
type Registry struct {
	source  discovery.Source
	creds   credentials.TransportCredentials
	opts    Options
	metrics *metrics

	mu      sync.RWMutex
	members map[string]*Member
	// gone holds the servers forgotten (ForgetAfter passed) and since
	// when they have been out of reach: automatic promotion counts from
	// it. A server discovered again leaves it.
	gone map[string]time.Time
	now  func() time.Time
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
	return &Registry{source: source, creds: creds, opts: opts, metrics: newMetrics(reg), members: map[string]*Member{}, gone: map[string]time.Time{}, now: time.Now}
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
		delete(r.gone, s.Name)
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
		m := &Member{Server: s, conn: conn,
			Controller: csi.NewControllerClient(conn), Group: csi.NewGroupControllerClient(conn), Identity: csi.NewIdentityClient(conn)}
		if r.opts.Replication != nil {
			m.Replication = r.opts.Replication(s, conn)
		}
		r.members[s.Name] = m
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
			// Out of reach since it began failing its probes, if it
			// did; else from now on: this controller reaches it no more.
			since := now
			if st := m.Status(); !st.Healthy && !st.DownSince.IsZero() {
				since = st.DownSince
			}
			r.gone[name] = since
			klog.InfoS("Storage server removed", "server", name, "unreachableSince", since)
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

// Gone returns the servers forgotten since they were last discovered
// (discovery stopped listing them for ForgetAfter), each with the time
// since which this controller could not reach it: when it began failing
// its probes, else when it was forgotten. Kept in memory only.
func (r *Registry) Gone() map[string]time.Time {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]time.Time, len(r.gone))
	for k, v := range r.gone {
		out[k] = v
	}
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
