package nfs

import (
	"errors"
	"testing"
)

func TestStatus(t *testing.T) {
	g, r, exports := newFake(t, 2)
	ctx := ctxT(t)
	if st := g.Status(); st.Up || st.State != "stopped" || st.Pid != 0 {
		t.Fatalf("before Start: %+v", st)
	}
	if err := g.SetExports(ctx, exports); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st := g.Status()
	if !st.Up || st.State != "running" || st.Pid != g.Pid() || st.Exports != 2 || st.Restarts != 0 {
		t.Fatalf("running: %+v", st)
	}
	// A crash: down while the supervisor brings it back, then up again
	// with one restart counted.
	gate := make(chan struct{})
	r.mu.Lock()
	r.gate = gate
	r.mu.Unlock()
	first := g.Pid()
	r.proc(0).die(errors.New("signal: killed"))
	eventually(t, "restarting", func() bool { return !g.Status().Up })
	if st := g.Status(); st.State != "restarting" || st.Restarts != 1 || st.Exports != 0 {
		t.Errorf("while restarting: %+v", st)
	}
	close(gate)
	eventually(t, "up again", func() bool { return g.Status().Up })
	if st := g.Status(); st.Restarts != 1 || st.Pid == first || st.Exports != 2 {
		t.Errorf("after the restart: %+v", st)
	}
	if err := g.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := g.Status(); st.Up || st.State != "stopped" {
		t.Errorf("after Stop: %+v", st)
	}
}
