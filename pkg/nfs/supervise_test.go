package nfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStagedBeforeStart(t *testing.T) {
	g, r, exports := newFake(t, 3)
	ctx := ctxT(t)
	if err := g.SetExports(ctx, exports[:2]); err != nil {
		t.Fatal(err)
	}
	if err := g.Export(ctx, exports[2]); err != nil {
		t.Fatal(err)
	}
	if err := g.Healthy(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Healthy before Start = %v, want ErrUnavailable", err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	starts, reloads, loads := r.counts()
	if starts != 1 || reloads != 0 || !slices.Equal(loads[0], []uint32{1, 2, 3}) {
		t.Errorf("starts %d reloads %d loads %v; want the staged exports loaded at start", starts, reloads, loads)
	}
	if err := g.Healthy(); err != nil {
		t.Errorf("Healthy = %v", err)
	}
	if g.Pid() != 1001 {
		t.Errorf("Pid = %d", g.Pid())
	}
	// The main config was written with the include.
	main, err := os.ReadFile(filepath.Join(g.Config().RunDir, "ganesha.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `%include "` + filepath.Join(g.Config().RunDir, "exports.conf") + `"`; !strings.Contains(string(main), want) {
		t.Errorf("ganesha.conf lacks %s:\n%s", want, main)
	}
}

func TestCoalescing(t *testing.T) {
	const n = 200
	g, r, exports := newFake(t, n)
	r.reloadDelay = 20 * time.Millisecond // like ganesha with a few hundred exports
	ctx := ctxT(t)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, e := range exports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- g.Export(ctx, e)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Export: %v", err)
		}
	}
	_, reloads, loads := r.counts()
	// One reload for the first caller, one or two for everybody who
	// arrived while it ran: far fewer than one per call.
	if reloads > 5 {
		t.Errorf("%d concurrent exports took %d reloads", n, reloads)
	}
	if last := loads[len(loads)-1]; len(last) != n {
		t.Errorf("last load had %d exports, want %d", len(last), n)
	}
	if got := g.Stats().Reloads; got != reloads {
		t.Errorf("Stats().Reloads = %d, runner saw %d", got, reloads)
	}
	t.Logf("%d concurrent exports: %d reloads", n, reloads)

	// Exporting the same thing again costs nothing.
	if err := g.Export(ctx, exports[0]); err != nil {
		t.Fatal(err)
	}
	if _, again, _ := r.counts(); again != reloads {
		t.Errorf("idempotent Export reloaded (%d -> %d)", reloads, again)
	}
	if len(g.Exports()) != n {
		t.Errorf("Exports() has %d", len(g.Exports()))
	}
}

func TestUnexport(t *testing.T) {
	g, r, exports := newFake(t, 2)
	ctx := ctxT(t)
	if err := g.SetExports(ctx, exports); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Unexport(ctx, 999); err != nil {
		t.Errorf("Unexport unknown = %v", err)
	}
	if err := g.Unexport(ctx, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Unexport 0 = %v, want ErrInvalid", err)
	}
	if _, reloads, _ := r.counts(); reloads != 0 {
		t.Errorf("unknown unexport reloaded")
	}
	if err := g.Unexport(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_, reloads, loads := r.counts()
	if reloads != 1 || !slices.Equal(loads[len(loads)-1], []uint32{2}) {
		t.Errorf("after Unexport(1): reloads %d, loaded %v", reloads, loads)
	}
	if got := ids(g.Exports()); !slices.Equal(got, []uint32{2}) {
		t.Errorf("Exports() = %v", got)
	}
}

func TestExportValidationAndConflicts(t *testing.T) {
	g, _, exports := newFake(t, 2)
	ctx := ctxT(t)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Export(ctx, exports[0]); err != nil {
		t.Fatal(err)
	}
	clash := exports[1]
	clash.Pseudo = exports[0].Pseudo
	if err := g.Export(ctx, clash); !errors.Is(err, ErrInvalid) {
		t.Errorf("pseudo clash = %v, want ErrInvalid", err)
	}
	nested := exports[1]
	nested.Pseudo = exports[0].Pseudo + "/inner"
	if err := g.Export(ctx, nested); !errors.Is(err, ErrInvalid) {
		t.Errorf("nested pseudo = %v, want ErrInvalid", err)
	}
	missing := exports[1]
	missing.Path = filepath.Join(t.TempDir(), "nope")
	if err := g.Export(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing dir = %v, want ErrNotFound", err)
	}
	if err := g.SetExports(ctx, []Export{exports[0], clash}); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetExports with clash = %v, want ErrInvalid", err)
	}
	// Replacing an export's pseudo path (same ID) is allowed.
	moved := exports[0]
	moved.Pseudo = "/dots/moved"
	if err := g.Export(ctx, moved); err != nil {
		t.Errorf("moving pseudo: %v", err)
	}
	if got := g.Exports(); len(got) != 1 || !got[0].Equal(moved) {
		t.Errorf("Exports() = %+v", got)
	}
}

func TestRejectedExport(t *testing.T) {
	g, r, exports := newFake(t, 3)
	r.reject["/dots/v2"] = true
	ctx := ctxT(t)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Export(ctx, exports[0]); err != nil {
		t.Fatal(err)
	}
	err := g.Export(ctx, exports[1])
	if !errors.Is(err, ErrExportFailed) {
		t.Fatalf("rejected export = %v, want ErrExportFailed", err)
	}
	if got := ids(g.Exports()); !slices.Equal(got, []uint32{1}) {
		t.Errorf("Exports() after rejection = %v, want [1]", got)
	}
	err = g.SetExports(ctx, exports)
	if !errors.Is(err, ErrExportFailed) {
		t.Fatalf("SetExports = %v, want ErrExportFailed", err)
	}
	if got := ids(g.Exports()); !slices.Equal(got, []uint32{1, 3}) {
		t.Errorf("Exports() after SetExports = %v, want [1 3]", got)
	}
	// Once ganesha accepts it, a retry succeeds.
	r.mu.Lock()
	delete(r.reject, "/dots/v2")
	r.mu.Unlock()
	if err := g.Export(ctx, exports[1]); err != nil {
		t.Errorf("retry: %v", err)
	}
}

func TestPathChangeReloadsTwice(t *testing.T) {
	g, r, exports := newFake(t, 2)
	ctx := ctxT(t)
	if err := g.SetExports(ctx, exports); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	moved := exports[0]
	moved.Path = exports[1].Path
	if err := g.Export(ctx, moved); err != nil {
		t.Fatal(err)
	}
	_, reloads, loads := r.counts()
	if reloads != 2 {
		t.Fatalf("path change took %d reloads, want 2", reloads)
	}
	if !slices.Equal(loads[1], []uint32{2}) || !slices.Equal(loads[2], []uint32{1, 2}) {
		t.Errorf("loads %v: want the export dropped, then added back", loads)
	}
}

func TestRestartAfterCrash(t *testing.T) {
	g, r, exports := newFake(t, 3)
	ctx := ctxT(t)
	if err := g.SetExports(ctx, exports[:2]); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.proc(0).die(errors.New("signal: killed"))
	eventually(t, "restart", func() bool { return g.Pid() == 1002 })
	if err := g.Healthy(); err != nil {
		t.Errorf("Healthy after restart: %v", err)
	}
	starts, _, loads := r.counts()
	if starts != 2 || !slices.Equal(loads[1], []uint32{1, 2}) {
		t.Errorf("starts %d loads %v: want the exports back after the restart", starts, loads)
	}
	if g.Stats().Restarts != 1 {
		t.Errorf("Stats = %+v", g.Stats())
	}
	// Still serving changes.
	if err := g.Export(ctx, exports[2]); err != nil {
		t.Fatal(err)
	}
	if _, _, loads = r.counts(); !slices.Equal(loads[len(loads)-1], []uint32{1, 2, 3}) {
		t.Errorf("after restart, loads %v", loads)
	}
}

func TestExportWaitsForRestart(t *testing.T) {
	g, r, exports := newFake(t, 2)
	ctx := ctxT(t)
	if err := g.Export(ctx, exports[0]); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	r.mu.Lock()
	r.gate = gate
	r.mu.Unlock()
	r.proc(0).die(errors.New("crash"))
	eventually(t, "restarting state", func() bool { return g.Healthy() != nil })

	done := make(chan error, 1)
	go func() { done <- g.Export(ctx, exports[1]) }()
	select {
	case err := <-done:
		t.Fatalf("Export returned %v while the server was down", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatalf("Export after restart: %v", err)
	}
	if _, _, loads := r.counts(); !slices.Equal(loads[len(loads)-1], []uint32{1, 2}) {
		t.Errorf("loads %v", loads)
	}
}

func TestRestartBackoffAndFailFast(t *testing.T) {
	g, r, exports := newFake(t, 2)
	ctx := ctxT(t)
	if err := g.Export(ctx, exports[0]); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	r.mu.Lock()
	r.failStarts = 3
	r.gate = gate
	r.mu.Unlock()
	r.proc(0).die(errors.New("crash"))
	gate <- struct{}{} // let one start attempt through; it fails
	eventually(t, "a failed restart", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.retrying
	})
	// While restarts fail, changes are kept but callers hear at once that
	// the server is down.
	if err := g.Export(ctx, exports[1]); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Export while restarts fail = %v, want ErrUnavailable", err)
	}
	if err := g.Healthy(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Healthy = %v", err)
	}
	close(gate)
	eventually(t, "recovery", func() bool { return g.Healthy() == nil })
	starts, _, loads := r.counts()
	if starts != 5 { // first start, three failures, success
		t.Errorf("starts = %d, want 5", starts)
	}
	if !slices.Equal(loads[len(loads)-1], []uint32{1, 2}) {
		t.Errorf("the export staged while down is missing: %v", loads)
	}
}

func TestReloadTimeoutRestarts(t *testing.T) {
	g, r, exports := newFake(t, 1)
	g.cfg.ReloadTimeout = 20 * time.Millisecond
	ctx := ctxT(t)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.reloadDelay = time.Hour // a hung ganesha
	r.mu.Unlock()
	if err := g.Export(ctx, exports[0]); err != nil {
		t.Fatalf("Export: %v", err)
	}
	starts, _, loads := r.counts()
	if starts != 2 || !slices.Equal(loads[len(loads)-1], []uint32{1}) {
		t.Errorf("starts %d loads %v: want a restart serving the export", starts, loads)
	}
	if sig := r.proc(0).signals; !slices.Equal(sig, []string{"KILL"}) {
		t.Errorf("hung process got %v", sig)
	}
}

func TestStop(t *testing.T) {
	g, r, exports := newFake(t, 2)
	ctx := ctxT(t)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil { // no-op
		t.Fatal(err)
	}
	if err := g.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	p := r.proc(0)
	if !slices.Equal(p.signals, []string{"TERM"}) {
		t.Errorf("signals %v", p.signals)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("process still running after Stop")
	}
	if g.Pid() != 0 || !errors.Is(g.Healthy(), ErrUnavailable) {
		t.Errorf("after Stop: pid %d healthy %v", g.Pid(), g.Healthy())
	}
	if err := g.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	// Changes while stopped are kept for the next start.
	if err := g.Export(ctx, exports[1]); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, loads := r.counts(); !slices.Equal(loads[len(loads)-1], []uint32{2}) {
		t.Errorf("second start loaded %v", loads)
	}
}

func TestStopKillsStubbornProcess(t *testing.T) {
	g, r, _ := newFake(t, 0)
	g.cfg.StopTimeout = 10 * time.Millisecond
	ctx := ctxT(t)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p := r.proc(0)
	p.ignoreTerm = true
	if err := g.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.signals, []string{"TERM", "KILL"}) {
		t.Errorf("signals %v, want TERM then KILL", p.signals)
	}
}

func TestStopReleasesWaiters(t *testing.T) {
	g, r, exports := newFake(t, 1)
	ctx := ctxT(t)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	defer close(gate)
	r.mu.Lock()
	r.gate = gate
	r.mu.Unlock()
	r.proc(0).die(errors.New("crash"))
	eventually(t, "restarting", func() bool { return g.Healthy() != nil })
	done := make(chan error, 1)
	go func() { done <- g.Export(ctx, exports[0]) }()
	// Once the export is recorded, Export waits for the restart, or finds
	// the server stopped: either way Stop must end it.
	eventually(t, "the export recorded", func() bool { return slices.Contains(ids(g.Exports()), exports[0].ID) })
	if err := g.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrUnavailable) {
		t.Errorf("Export interrupted by Stop = %v, want ErrUnavailable", err)
	}
}

func TestStartFailure(t *testing.T) {
	g, r, exports := newFake(t, 1)
	r.failStarts = 1
	ctx := ctxT(t)
	if err := g.Start(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start = %v, want ErrUnavailable", err)
	}
	if err := g.Healthy(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Healthy = %v", err)
	}
	if err := g.Export(ctx, exports[0]); err != nil { // staged
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, loads := r.counts(); !slices.Equal(loads[len(loads)-1], []uint32{1}) {
		t.Errorf("loads %v", loads)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	g, r, exports := newFake(t, 1)
	ctx := ctxT(t)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.reloadDelay = 200 * time.Millisecond
	r.mu.Unlock()
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := g.Export(short, exports[0]); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Export past its deadline = %v, want ErrUnavailable", err)
	}
	// The change still goes through.
	eventually(t, "reload", func() bool { _, n, _ := r.counts(); return n == 1 })
}
