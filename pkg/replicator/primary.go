package replicator

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dots-csi/dots/pkg/api"
)

// primary is what the manager keeps of one replicated primary: where its
// replicas are, how each is doing, whether it may be served.
type primary struct {
	name string
	// confirmed: a replica confirmed that no newer generation exists (or
	// this server made it primary itself: a promotion, SetReplicas on a
	// served volume). Until then the volume is not exported.
	confirmed atomic.Bool
	// handingOver: Handover runs; from its final step until the demotion
	// is done no other step may snapshot or send (a snapshot after the
	// final one would reach the replicas, and the promotion expecting
	// the final one would find it is not the newest).
	handingOver atomic.Bool
	kick        chan struct{}      // a step now (a new replica)
	reset       chan struct{}      // the interval changed: wait it from now
	step        sync.Mutex         // one replication step at a time
	stop        context.CancelFunc // guarded by Manager.mu

	mu       sync.Mutex
	replicas []api.Peer
	interval time.Duration
	status   map[string]*api.ReplicaStatus // by server name
	since    time.Time                     // replication started: a replica never synced lags from here
}

func newPrimary(name string, replicas []api.Peer, interval time.Duration) *primary {
	p := &primary{name: name, kick: make(chan struct{}, 1), reset: make(chan struct{}, 1), status: map[string]*api.ReplicaStatus{}, since: time.Now()}
	p.configure(replicas, interval)
	return p
}

// configure sets the replicas and interval; statuses of replicas still
// listed are kept. It says whether a replica was added.
func (p *primary) configure(replicas []api.Peer, interval time.Duration) (added bool) {
	if interval <= 0 {
		interval = api.DefaultReplicationInterval
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.replicas, p.interval = slices.Clone(replicas), interval
	keep := map[string]*api.ReplicaStatus{}
	for _, r := range replicas {
		st, ok := p.status[r.Server]
		if !ok {
			st, added = &api.ReplicaStatus{}, true
		}
		st.Peer = r
		keep[r.Server] = st
	}
	p.status = keep
	return added
}

func (p *primary) peers() []api.Peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.replicas)
}

func (p *primary) replicaNames() []string {
	var out []string
	for _, r := range p.peers() {
		out = append(out, r.Server)
	}
	return out
}

func (p *primary) intervalOf() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.interval
}

func (p *primary) age() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Since(p.since)
}

// synced records a completed send of the snapshot taken at at; recovered
// says whether the replica's last step had failed.
func (p *primary) synced(server string, at time.Time, bytes int64) (recovered bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.status[server]; ok {
		if at.After(st.LastSync) {
			st.LastSync = at
		}
		st.BytesSent += bytes
		recovered = st.LastError != ""
		st.LastError = ""
	}
	return recovered
}

// observed records what a replica reported holding.
func (p *primary) observed(server string, latest time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.status[server]; ok && latest.After(st.LastSync) {
		st.LastSync = latest
	}
}

// failed records a failed step to a replica; changed says whether its
// error differs from the last one (logged only then: a replica that is
// down fails every interval).
func (p *primary) failed(server string, bytes int64, err error) (changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.status[server]; ok {
		st.BytesSent += bytes
		changed = st.LastError != err.Error()
		st.LastError = err.Error()
	}
	return changed
}

// known is the newest snapshot a replica is known to hold ("" when none).
func (p *primary) known(server string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.status[server]; ok {
		return st.LastSync
	}
	return time.Time{}
}

// statuses are the replicas' statuses with their lag at now.
func (p *primary) statuses(now time.Time) []api.ReplicaStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]api.ReplicaStatus, 0, len(p.replicas))
	for _, r := range p.replicas {
		st := *p.status[r.Server]
		from := st.LastSync
		if from.IsZero() {
			from = p.since
		}
		st.LagSeconds = now.Sub(from).Seconds()
		out = append(out, st)
	}
	return out
}

// wait waits one interval, jittered by ±10 % so primaries started together
// do not snapshot together, or for a kick; a changed interval is waited
// from the change. False when ctx ended.
func (p *primary) wait(ctx context.Context) bool {
	for {
		d := p.intervalOf()
		d += time.Duration((rand.Float64()*0.2 - 0.1) * float64(d))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-p.kick:
			t.Stop()
			return true
		case <-t.C:
			return true
		case <-p.reset:
			t.Stop()
		}
	}
}

// restart makes a waiting loop wait its (new) interval from now.
func (p *primary) restart() {
	select {
	case p.reset <- struct{}{}:
	default:
	}
}

// poke asks for a step now.
func (p *primary) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}
