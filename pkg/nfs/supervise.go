package nfs

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"
)

// stableAfter: a process that ran this long before dying restarts after the
// shortest delay again; quicker deaths double the delay.
const stableAfter = time.Minute

// killWait bounds the wait for a SIGKILLed process to be reaped.
const killWait = 10 * time.Second

// supervise owns the process: it reloads exports when they change,
// restarts the process when it dies, and stops it when runCtx is cancelled.
// It is the only goroutine that signals the process, so reloads and
// restarts never overlap.
func (g *Ganesha) supervise(runCtx context.Context, proc Process, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-runCtx.Done():
			g.shutdown(proc)
			return
		case <-proc.Done():
			if proc = g.restart(runCtx, proc); proc == nil {
				g.shutdown(nil)
				return
			}
		case <-g.busDone():
			g.busDied()
		case <-g.kick:
			g.reload(runCtx, proc)
		}
	}
}

// spec is how the runner starts this server.
func (g *Ganesha) spec() LaunchSpec {
	return LaunchSpec{
		Binary:     g.cfg.Binary,
		ConfigPath: g.cfg.configPath(),
		LogPath:    g.cfg.logPath(),
		PidPath:    g.cfg.pidPath(),
		OutPath:    g.cfg.outPath(),
		ListenAddr: g.cfg.listenAddr(),
		ProbeAddr:  g.cfg.probeAddr(),
	}
}

// launch writes the current exports and starts a process serving them
// (and, first, the private bus it connects to).
func (g *Ganesha) launch(ctx context.Context, msg string) (Process, error) {
	g.mu.Lock()
	snap, gen := maps.Clone(g.desired), g.gen
	g.dirty = nil // the start serves them all
	g.mu.Unlock()
	if err := g.writeExports(snap); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.StartTimeout)
	defer cancel()
	if err := g.ensureBus(ctx); err != nil {
		return nil, err
	}
	spec := g.spec()
	if g.bus != nil {
		spec.Env = []string{busEnv + "=" + g.bus.addr}
	}
	t0 := time.Now()
	proc, problems, err := g.runner.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	// A new ganesha has a new bus connection; ours may be to a dead bus.
	g.mgr.reset(spec.busAddr())
	g.startedAt = time.Now()
	failed := g.settle(snap, gen, problems, proc)
	klog.InfoS(msg, "pid", proc.Pid(), "exports", len(snap)-failed, "failed", failed,
		"port", g.cfg.NFSPort, "duration", time.Since(t0).Round(time.Millisecond))
	return proc, nil
}

// reload brings the live process up to date with desired: over DBus, one
// call per export changed since the last time, or else in one SIGHUP for
// all of them.
func (g *Ganesha) reload(runCtx context.Context, proc Process) {
	g.mu.Lock()
	if g.gen == g.servedGen {
		g.mu.Unlock()
		return
	}
	changes, gen := g.pendingLocked(), g.gen
	g.mu.Unlock()
	if g.changeOverDBus(runCtx, proc, gen, changes) {
		return
	}

	// Everything, by SIGHUP: this snapshot may be newer than changes.
	g.mu.Lock()
	snap, gen, prev := maps.Clone(g.desired), g.gen, g.served
	g.dirty = nil
	g.mu.Unlock()
	changes = diffExports(prev, snap)
	t0 := time.Now()
	// Ganesha cannot change an export's Path in place (it keeps the old
	// one and logs an error), so such exports are dropped in a first
	// reload and added back in the second.
	interim := maps.Clone(snap)
	for id, e := range snap {
		if old, ok := prev[id]; ok && old.Path != e.Path {
			delete(interim, id)
		}
	}
	if len(interim) != len(snap) {
		if _, err := g.reloadWith(runCtx, proc, interim); err != nil {
			g.countChanges(MethodSIGHUP, OutcomeError, len(changes))
			g.reloadFailed(runCtx, proc, err)
			return
		}
	}
	problems, err := g.reloadWith(runCtx, proc, snap)
	if err != nil {
		g.countChanges(MethodSIGHUP, OutcomeError, len(changes))
		g.reloadFailed(runCtx, proc, err)
		return
	}
	g.countChanges(MethodSIGHUP, OutcomeOK, len(changes))
	failed := g.settle(snap, gen, problems, proc)
	klog.InfoS("ganesha reloaded exports", "pid", proc.Pid(), "exports", len(snap)-failed, "failed", failed,
		"duration", time.Since(t0).Round(time.Millisecond))
}

func (g *Ganesha) reloadWith(runCtx context.Context, proc Process, set map[uint32]Export) ([]string, error) {
	if err := g.writeExports(set); err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.stats.Reloads++
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(runCtx, g.cfg.ReloadTimeout)
	defer cancel()
	return proc.Reload(ctx)
}

// reloadFailed handles a reload that did not complete. A dead process is
// restarted by supervise; Stop needs nothing more. Otherwise the process is
// stuck or confused, and a restart from the files on disk is the way back.
func (g *Ganesha) reloadFailed(runCtx context.Context, proc Process, err error) {
	select {
	case <-proc.Done():
		return
	default:
	}
	if runCtx.Err() != nil {
		return
	}
	klog.ErrorS(err, "ganesha export reload failed; restarting it", "pid", proc.Pid())
	_ = proc.Kill()
}

// settle records the outcome of a start or reload of snap (generation gen):
// exports ganesha refused are dropped from desired unless they changed
// meanwhile, and waiters are woken. It returns the number refused.
func (g *Ganesha) settle(snap map[uint32]Export, gen uint64, problems []string, proc Process) int {
	failed := failedExports(problems, g.cfg.exportsDir(), snap)
	g.mu.Lock()
	defer g.mu.Unlock()
	served := maps.Clone(snap)
	for id, reason := range failed {
		e := snap[id]
		delete(served, id)
		g.failures[id] = failure{gen: gen, export: e, err: fmt.Errorf("%w: export %d (%s as %s): %s", ErrExportFailed, id, e.Path, e.Pseudo, reason)}
		if cur, ok := g.desired[id]; ok && cur.Equal(e) {
			delete(g.desired, id)
			delete(g.pseudo, e.Pseudo)
		}
		klog.ErrorS(nil, "ganesha rejected export", "id", id, "path", e.Path, "pseudo", e.Pseudo, "reason", reason)
	}
	for id := range served {
		delete(g.failures, id)
	}
	g.served, g.servedGen = served, gen
	g.proc, g.state, g.retrying = proc, stateRunning, false
	g.broadcastLocked()
	return len(failed)
}

// restart brings a dead process back, with a growing delay between
// attempts. It returns nil if runCtx is cancelled first.
func (g *Ganesha) restart(runCtx context.Context, dead Process) Process {
	exitErr := dead.ExitErr()
	if exitErr == nil {
		exitErr = fmt.Errorf("exited with status 0")
	}
	g.mu.Lock()
	g.state, g.proc, g.served = stateRestarting, nil, nil
	g.lastErr, g.retrying = exitErr, false
	g.stats.Restarts++
	g.broadcastLocked()
	g.mu.Unlock()

	if g.crashDelay == 0 || time.Since(g.startedAt) > stableAfter {
		g.crashDelay = g.cfg.RestartDelay
	}
	klog.ErrorS(exitErr, "ganesha exited unexpectedly; restarting", "pid", dead.Pid(), "delay", g.crashDelay)
	for {
		timer := time.NewTimer(g.crashDelay)
		select {
		case <-runCtx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		g.crashDelay = min(2*g.crashDelay, g.cfg.MaxRestartDelay)
		proc, err := g.launch(runCtx, "ganesha restarted")
		if err == nil {
			return proc
		}
		if runCtx.Err() != nil {
			return nil
		}
		g.mu.Lock()
		g.lastErr, g.retrying = err, true
		g.broadcastLocked()
		g.mu.Unlock()
		klog.ErrorS(err, "ganesha restart failed", "retryIn", g.crashDelay)
	}
}

// shutdown stops proc (if any) and marks the server stopped.
func (g *Ganesha) shutdown(proc Process) {
	g.mu.Lock()
	ctx := g.stopCtx
	g.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	if proc != nil {
		t0 := time.Now()
		if err := proc.Terminate(); err != nil {
			klog.ErrorS(err, "ganesha: SIGTERM failed", "pid", proc.Pid())
		}
		timer := time.NewTimer(g.cfg.StopTimeout)
		select {
		case <-proc.Done():
		case <-timer.C:
			klog.InfoS("ganesha did not stop in time; killing it", "pid", proc.Pid(), "timeout", g.cfg.StopTimeout)
			_ = proc.Kill()
		case <-ctx.Done():
			klog.InfoS("ganesha stop cancelled; killing it", "pid", proc.Pid())
			_ = proc.Kill()
		}
		timer.Stop()
		select {
		case <-proc.Done():
		case <-time.After(killWait):
			klog.ErrorS(nil, "ganesha still not reaped after SIGKILL", "pid", proc.Pid())
		}
		klog.InfoS("ganesha stopped", "pid", proc.Pid(), "duration", time.Since(t0).Round(time.Millisecond))
	}
	// After ganesha: it exits when its bus goes.
	g.stopBus()
	g.mu.Lock()
	g.state, g.proc, g.served = stateStopped, nil, nil
	g.broadcastLocked()
	g.mu.Unlock()
}

func writeFileAtomic(path, text string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.WriteString(text)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, werr)
	}
	return nil
}
