// Package replicator is a storage server's side of replicas (README
// "Replicas"): the service pkg/replication carries, over the server's pool.
// It receives streams into replicas (refusing older generations, demoting
// a local primary a newer generation supersedes), runs one sender loop per
// replicated primary (a replication snapshot every interval, the increment
// from the newest snapshot both sides hold to each replica, a full stream
// when there is none, a restart of an interrupted one the next interval),
// hands a primary over, promotes a replica, copies a snapshot to another
// server, and keeps a replicated primary unexported at start-up until a
// replica has confirmed that no newer generation exists.
package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/replication"
	"github.com/dots-csi/dots/pkg/zfs"
)

// Host is what the storage server lends the manager: exporting (so
// replication does not import the server) and the server's per-volume
// lock, which CSI calls on the volume take too.
type Host interface {
	Export(ctx context.Context, v *zfs.Volume) error
	Unexport(ctx context.Context, v *zfs.Volume) error
	// Lock takes the volume's lock or fails at once (busy).
	Lock(volume string) (unlock func(), err error)
}

// Peer is another server's replication service (a *replication.Client).
type Peer interface {
	api.ReplicationServer
	Receive(ctx context.Context, h replication.StreamHeader, write func(io.Writer) error) (api.VolumeState, int64, error)
}

// Config configures a Manager.
type Config struct {
	// Server is this server's name (a stream's source, a replica's
	// dots:primary).
	Server string
	// Dial returns the client of the peer at a gRPC address (a cache:
	// replication.Peers).
	Dial func(addr string) (Peer, error)
	// CallTimeout bounds one State or control call to a peer (0: 10 s);
	// a stream is bounded by its interval's context only.
	CallTimeout time.Duration
	Registerer  prometheus.Registerer
}

// Manager is a server's replication.
type Manager struct {
	cfg  Config
	pool Pool
	host Host
	m    *metrics

	mu       sync.Mutex
	vols     map[string]*primary    // replicated primaries of this pool
	diverged divergedCache          // control.go
	locks    map[string]*sync.Mutex // per volume: one replication change at a time
	run      context.Context        // Run's context: the loops' lifetime (nil before Run)
	closed   bool                   // Run is over
	wg       sync.WaitGroup
}

var _ replication.Service = (*Manager)(nil)

// New returns a manager of pool's replicas; Load, then Run.
func New(cfg Config, pool Pool, host Host) (*Manager, error) {
	if cfg.Server == "" || cfg.Dial == nil || pool == nil || host == nil {
		return nil, errors.New("replicator: server name, dialer, pool and host are required")
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	return &Manager{cfg: cfg, pool: pool, host: host, m: newMetrics(cfg.Registerer),
		vols: map[string]*primary{}, locks: map[string]*sync.Mutex{}, diverged: newDivergedCache()}, nil
}

// volumeLock serialises the manager's changes of one volume (receive,
// handover, promotion, demotion, a replication step's bookkeeping).
func (m *Manager) volumeLock(name string) *sync.Mutex {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.locks[name]
	if !ok {
		l = &sync.Mutex{}
		m.locks[name] = l
	}
	return l
}

// Load finds the pool's replicated primaries and holds them back from
// being served until a replica confirms them (the start-up rule). Call it
// before the server exports its volumes; Held says which to leave out.
func (m *Manager) Load(ctx context.Context) error {
	vols, err := m.pool.ListVolumes(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range vols {
		if len(v.Replicas) == 0 {
			continue
		}
		p := newPrimary(v.Name, v.Replicas, v.ReplInterval)
		m.vols[v.Name] = p
	}
	m.m.waiting.Set(float64(len(m.vols)))
	if len(m.vols) > 0 {
		klog.InfoS("Replicated primaries held back until a replica confirms no newer generation exists", "count", len(m.vols))
	}
	return nil
}

// Held says whether a volume must not be exported now: a replicated
// primary not yet confirmed at start-up.
func (m *Manager) Held(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.vols[name]
	return ok && !p.confirmed.Load()
}

// Run runs the sender loop of every replicated primary until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	m.run = ctx
	for _, p := range m.vols {
		m.startLocked(p)
	}
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	m.closed = true // no loop starts after this (a call still in flight)
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// startLocked starts p's loop if Run has started and p's is not running.
func (m *Manager) startLocked(p *primary) {
	if m.run == nil || m.closed || p.stop != nil {
		return
	}
	ctx, cancel := context.WithCancel(m.run)
	p.stop = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.loop(ctx, p)
	}()
}

// forgetPrimary forgets p if it is still the volume's (a promotion may
// have replaced it).
func (m *Manager) forgetPrimary(p *primary) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.vols[p.name] == p {
		m.forgetLocked(p.name)
	}
}

// forget stops and drops a volume's loop (no longer a replicated primary
// here).
func (m *Manager) forget(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetLocked(name)
}

func (m *Manager) forgetLocked(name string) {
	if p, ok := m.vols[name]; ok {
		if p.stop != nil {
			p.stop()
		}
		delete(m.vols, name)
		m.m.forget(name, p.replicaNames())
	}
	m.updateWaitingLocked()
}

func (m *Manager) updateWaitingLocked() {
	n := 0
	for _, p := range m.vols {
		if !p.confirmed.Load() {
			n++
		}
	}
	m.m.waiting.Set(float64(n))
}

// primaryOf is the loop state of a replicated primary, or nil.
func (m *Manager) primaryOf(name string) *primary {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vols[name]
}

// Status is what ControllerGetVolume and ListVolumes report of a
// replicated primary: each replica's status, and a message when one lags
// more than api.ReplicaAbnormalIntervals intervals ("" when none does).
func (m *Manager) Status(v *zfs.Volume) (replicas []api.ReplicaStatus, abnormal string) {
	p := m.primaryOf(v.Name)
	if p == nil {
		return nil, ""
	}
	replicas = p.statuses(time.Now())
	limit := time.Duration(api.ReplicaAbnormalIntervals) * p.intervalOf()
	var late []string
	for _, r := range replicas {
		if time.Duration(r.LagSeconds*float64(time.Second)) > limit || r.LastSync.IsZero() && p.age() > limit {
			late = append(late, fmt.Sprintf("%s (lag %.0fs%s)", r.Server, r.LagSeconds, errSuffix(r.LastError)))
		}
	}
	if !p.confirmed.Load() {
		return replicas, "not served: no replica has confirmed yet that no newer generation of the volume exists (start-up rule)"
	}
	if len(late) > 0 {
		slices.Sort(late)
		return replicas, fmt.Sprintf("replicas more than %d intervals (%s) behind: %v", api.ReplicaAbnormalIntervals, limit, late)
	}
	return replicas, ""
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return ", " + e
}

// ReplicaCount is how many replicas of other servers' volumes the pool
// holds (the manifest's count).
func (m *Manager) ReplicaCount(ctx context.Context) (int, error) {
	names, err := m.pool.ReplicaNames(ctx)
	return len(names), err
}

// callCtx bounds one control call to a peer.
func (m *Manager) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.cfg.CallTimeout)
}
