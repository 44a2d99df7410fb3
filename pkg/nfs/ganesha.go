package nfs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

type runState int

const (
	stateStopped    runState = iota // never started, or stopped
	stateStarting                   // Start is launching the first process
	stateRunning                    // a process serves the exports
	stateRestarting                 // the process died; the supervisor is bringing it back
)

func (s runState) String() string {
	return [...]string{"stopped", "starting", "running", "restarting"}[s]
}

// failure records an export ganesha refused.
type failure struct {
	gen    uint64 // the generation of the config it was refused in
	export Export
	err    error
}

// Stats counts what the supervisor did.
type Stats struct {
	Reloads  int // SIGHUPs sent
	Restarts int // unexpected exits recovered from
	// Changes counts export changes by how they reached ganesha.
	Changes map[ChangeKey]int
}

// Ganesha runs one NFS-Ganesha server as a supervised child process and
// implements Exporter on it.
//
// Changes are coalesced: every change bumps a generation number and wakes
// the supervisor, which writes the whole export set and reloads once for
// all the changes made since its last reload. Callers wait until a config
// of their generation or later is live.
//
// While the server is not running (before Start, after Stop), changes are
// recorded and the calls return nil; Start serves them.
type Ganesha struct {
	cfg    GaneshaConfig
	runner Runner
	dial   func(ctx context.Context, addr string) error

	life sync.Mutex // serialises Start and Stop

	mu        sync.Mutex
	desired   map[uint32]Export // what should be served
	pseudo    pseudoIndex       // desired, by pseudo path
	gen       uint64            // bumped on every change to desired
	served    map[uint32]Export // what the live process has loaded
	servedGen uint64            // generation of served
	failures  map[uint32]failure
	dirty     map[uint32]struct{} // IDs changed in desired since the supervisor last took them
	state     runState
	proc      Process
	lastErr   error // why the process last died or failed to start
	retrying  bool  // a restart attempt failed since the last crash
	stats     Stats
	notify    chan struct{} // closed and replaced when the above change
	kick      chan struct{} // one pending wake-up for the supervisor
	cancelRun context.CancelFunc
	stopCtx   context.Context // the context Stop was called with
	loopDone  chan struct{}

	bus *busProc // the private DBus; written by the supervisor under mu

	// Owned by the supervisor goroutine.
	startedAt  time.Time
	crashDelay time.Duration
	mgr        exportMgr
	files      map[uint32]Export // what each file in exports.d says
}

var _ Exporter = (*Ganesha)(nil)

// Option customises a Ganesha.
type Option func(*Ganesha)

// WithRunner replaces the process runner (ExecRunner by default).
func WithRunner(r Runner) Option { return func(g *Ganesha) { g.runner = r } }

// NewGanesha validates cfg and returns a stopped server.
func NewGanesha(cfg GaneshaConfig, opts ...Option) (*Ganesha, error) {
	cfg, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	g := &Ganesha{
		cfg:      cfg,
		runner:   ExecRunner{},
		dial:     dialTCP,
		desired:  map[uint32]Export{},
		pseudo:   pseudoIndex{},
		failures: map[uint32]failure{},
		notify:   make(chan struct{}),
		kick:     make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(g)
	}
	g.mgr.cfg = cfg
	return g, nil
}

// Config returns the configuration in use, defaults applied.
func (g *Ganesha) Config() GaneshaConfig { return g.cfg }

func dialTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Export implements Exporter.
func (g *Ganesha) Export(ctx context.Context, e Export) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if err := g.cfg.within(e); err != nil {
		return err
	}
	e = e.clone()
	// Ganesha would refuse a missing directory too, but only after a
	// reload and with a vaguer message.
	if fi, err := os.Stat(e.Path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: export %d: directory %s does not exist", ErrNotFound, e.ID, e.Path)
		}
		return fmt.Errorf("export %d: %w", e.ID, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("%w: export %d: %s is not a directory", ErrInvalid, e.ID, e.Path)
	}

	g.mu.Lock()
	if err := g.pseudo.conflict(e); err != nil {
		g.mu.Unlock()
		return err
	}
	if old, ok := g.desired[e.ID]; !ok || !old.Equal(e) {
		if ok {
			delete(g.pseudo, old.Pseudo)
		}
		g.desired[e.ID] = e
		g.pseudo[e.Pseudo] = e.ID
		g.changedLocked(e.ID)
	} else if served, ok := g.served[e.ID]; ok && g.state == stateRunning && served.Equal(e) {
		g.mu.Unlock()
		return nil
	}
	gen, state := g.gen, g.state
	g.mu.Unlock()
	klog.V(4).InfoS("Export requested", "id", e.ID, "path", e.Path, "pseudo", e.Pseudo, "readOnly", e.ReadOnly, "generation", gen)
	if state == stateStopped {
		return nil
	}
	return g.await(ctx, gen, &e)
}

// Unexport implements Exporter.
func (g *Ganesha) Unexport(ctx context.Context, id uint32) error {
	if id < MinExportID || id > MaxExportID {
		return fmt.Errorf("%w: export id %d out of range %d..%d", ErrInvalid, id, MinExportID, MaxExportID)
	}
	g.mu.Lock()
	if old, ok := g.desired[id]; ok {
		delete(g.desired, id)
		delete(g.pseudo, old.Pseudo)
		g.changedLocked(id)
	} else if _, live := g.served[id]; !live || g.state != stateRunning {
		g.mu.Unlock()
		return nil
	}
	gen, state := g.gen, g.state
	g.mu.Unlock()
	klog.V(4).InfoS("Unexport requested", "id", id, "generation", gen)
	if state == stateStopped {
		return nil
	}
	return g.await(ctx, gen, nil)
}

// SetExports implements Exporter. Exports ganesha refuses are reported in
// the returned error (errors.Join of ErrExportFailed errors); the others
// are served.
func (g *Ganesha) SetExports(ctx context.Context, exports []Export) error {
	byID, err := validateSet(exports)
	if err != nil {
		return err
	}
	for id, e := range byID {
		if err := g.cfg.within(e); err != nil {
			return err
		}
		byID[id] = e.clone()
	}
	g.mu.Lock()
	if maps.EqualFunc(byID, g.desired, Export.Equal) && g.state == stateRunning && g.servedGen == g.gen {
		g.mu.Unlock()
		return nil
	}
	var changed []uint32
	for id, e := range byID {
		if old, ok := g.desired[id]; !ok || !old.Equal(e) {
			changed = append(changed, id)
		}
	}
	for id := range g.desired {
		if _, ok := byID[id]; !ok {
			changed = append(changed, id)
		}
	}
	g.desired = byID
	g.pseudo = make(pseudoIndex, len(byID))
	for id, e := range byID {
		g.pseudo[e.Pseudo] = id
	}
	g.changedLocked(changed...)
	gen, state := g.gen, g.state
	g.mu.Unlock()
	klog.V(4).InfoS("SetExports requested", "exports", len(exports), "generation", gen)
	if state == stateStopped {
		return nil
	}
	if err := g.await(ctx, gen, nil); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for _, e := range exports {
		if f, ok := g.failures[e.ID]; ok && f.gen >= gen && f.export.Equal(e) {
			errs = append(errs, f.err)
		}
	}
	return errors.Join(errs...)
}

// Exports implements Exporter.
func (g *Ganesha) Exports() []Export {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := slices.Collect(maps.Values(g.desired))
	slices.SortFunc(out, func(a, b Export) int { return int(a.ID) - int(b.ID) })
	return out
}

// changedLocked records a change to desired, of the exports ids, and
// wakes the supervisor.
func (g *Ganesha) changedLocked(ids ...uint32) {
	g.gen++
	if g.dirty == nil {
		g.dirty = map[uint32]struct{}{}
	}
	for _, id := range ids {
		g.dirty[id] = struct{}{}
	}
	select {
	case g.kick <- struct{}{}:
	default: // a wake-up is already pending; it will see this change too
	}
}

// broadcastLocked wakes everyone waiting in await.
func (g *Ganesha) broadcastLocked() {
	close(g.notify)
	g.notify = make(chan struct{})
}

// await waits until the config of generation gen (or a later one) is live.
// With e, it also reports whether ganesha refused e.
func (g *Ganesha) await(ctx context.Context, gen uint64, e *Export) error {
	for {
		g.mu.Lock()
		switch {
		case g.servedGen >= gen && g.state == stateRunning:
			var err error
			if e != nil {
				if f, ok := g.failures[e.ID]; ok && f.gen >= gen && f.export.Equal(*e) {
					err = f.err
				}
			}
			g.mu.Unlock()
			return err
		case g.state == stateStopped:
			g.mu.Unlock()
			return fmt.Errorf("%w: the server stopped; the change is kept for the next start", ErrUnavailable)
		case g.state == stateRestarting && g.retrying:
			err := g.lastErr
			g.mu.Unlock()
			return fmt.Errorf("%w: restarting after a crash (%v); the change is kept and served once it is back", ErrUnavailable, err)
		}
		ch := g.notify
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the NFS server: %v", ErrUnavailable, ctx.Err())
		}
	}
}

// Start writes the configuration, starts ganesha and returns once it
// accepts connections with the recorded exports loaded (any it refuses are
// logged and dropped from Exports). It then supervises the process until
// Stop. Starting a running server is a no-op.
func (g *Ganesha) Start(ctx context.Context) error {
	g.life.Lock()
	defer g.life.Unlock()
	g.mu.Lock()
	if g.state != stateStopped {
		g.mu.Unlock()
		return nil
	}
	g.state = stateStarting
	g.mu.Unlock()

	proc, err := g.firstLaunch(ctx)
	if err != nil {
		g.stopBus()
		g.mu.Lock()
		g.state = stateStopped
		g.lastErr = err
		g.broadcastLocked()
		g.mu.Unlock()
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	g.mu.Lock()
	g.cancelRun, g.loopDone, g.stopCtx = cancel, done, nil
	g.mu.Unlock()
	go g.supervise(runCtx, proc, done)
	return nil
}

func (g *Ganesha) firstLaunch(ctx context.Context) (Process, error) {
	for _, dir := range []string{g.cfg.RunDir, g.cfg.RecoveryDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	if err := writeFileAtomic(g.cfg.configPath(), renderMain(g.cfg)); err != nil {
		return nil, err
	}
	// Each export's file is written again from the recorded exports.
	if err := os.RemoveAll(g.cfg.exportsDir()); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(g.cfg.exportsDir(), 0o755); err != nil {
		return nil, err
	}
	g.files = nil
	return g.launch(ctx, "ganesha started")
}

// Stop shuts ganesha down: SIGTERM, then SIGKILL after StopTimeout (or
// when ctx ends). It returns once the process is gone. Stopping a stopped
// server is a no-op.
func (g *Ganesha) Stop(ctx context.Context) error {
	g.life.Lock()
	defer g.life.Unlock()
	g.mu.Lock()
	if g.state == stateStopped {
		g.mu.Unlock()
		return nil
	}
	g.stopCtx = ctx
	cancel, done := g.cancelRun, g.loopDone
	g.mu.Unlock()
	cancel()
	<-done // bounded: shutdown kills after StopTimeout or when ctx ends
	return nil
}

// Healthy reports whether the server is running and accepts connections.
func (g *Ganesha) Healthy() error {
	g.mu.Lock()
	state, lastErr := g.state, g.lastErr
	g.mu.Unlock()
	switch state {
	case stateRunning:
	case stateRestarting:
		return fmt.Errorf("%w: restarting after a crash (%v)", ErrUnavailable, lastErr)
	default:
		return fmt.Errorf("%w: %s", ErrUnavailable, state)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := g.dial(ctx, g.cfg.probeAddr()); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Pid is the running ganesha's process id, or 0.
func (g *Ganesha) Pid() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.proc == nil {
		return 0
	}
	return g.proc.Pid()
}

// Stats returns counters of reloads and restarts since NewGanesha.
func (g *Ganesha) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.stats
	st.Changes = maps.Clone(st.Changes)
	return st
}
