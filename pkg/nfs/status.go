package nfs

import "maps"

// Status is the NFS server's state as its supervisor knows it, read
// without touching the process (for metrics scrapes).
type Status struct {
	// Up: a process runs and serves the exports (not starting,
	// restarting after a crash, or stopped).
	Up bool
	// State is "stopped", "starting", "running" or "restarting".
	State string
	Pid   int
	// Restarts counts unexpected exits the supervisor recovered from, and
	// Reloads the export reloads (SIGHUP) it sent, since NewGanesha.
	Restarts, Reloads int
	// Exports is how many exports the running process serves; Failed how
	// many it refused (kept out of Exports, see ErrExportFailed).
	Exports, Failed int
	// BusPid is the private dbus-daemon's process id, 0 when none runs.
	BusPid int
	// ExportChanges counts export changes by method and outcome.
	ExportChanges map[ChangeKey]int
}

// Status reports the supervisor's view; it never blocks on the process.
func (g *Ganesha) Status() Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := Status{Up: g.state == stateRunning, State: g.state.String(), Restarts: g.stats.Restarts,
		Reloads: g.stats.Reloads, Exports: len(g.served), Failed: len(g.failures)}
	if g.proc != nil {
		st.Pid = g.proc.Pid()
	}
	if g.bus != nil {
		st.BusPid = g.bus.Pid()
	}
	st.ExportChanges = maps.Clone(g.stats.Changes)
	return st
}
