package nfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"
)

// fakeRunner stands in for ganesha in the supervision tests. Like ganesha
// it reads the exports file on start and on every reload, and it can
// reject exports, fail starts, hang reloads and die.
type fakeRunner struct {
	mu          sync.Mutex
	starts      int
	failStarts  int           // fail this many coming starts
	gate        chan struct{} // if set, starts wait for it
	reloadDelay time.Duration
	reject      map[string]bool // pseudo paths to refuse
	procs       []*fakeProc
	loads       [][]uint32 // export IDs read, per start or reload
	reloads     int
}

type fakeProc struct {
	r          *fakeRunner
	pid        int
	exports    string
	done       chan struct{}
	once       sync.Once
	mu         sync.Mutex
	exitErr    error
	ignoreTerm bool
	signals    []string
}

var (
	reID     = regexp.MustCompile(`(?m)^\tExport_Id = (\d+);$`)
	rePseudo = regexp.MustCompile(`(?m)^\tPseudo = "([^"]*)";$`)
)

// load reads the exports file as ganesha would, returning the problems.
func (r *fakeRunner) load(path string) []string {
	text, err := readIncluding(path, 0)
	if err != nil {
		return []string{err.Error()}
	}
	data := []byte(text)
	var ids []uint32
	for _, m := range reID.FindAllStringSubmatch(string(data), -1) {
		n, _ := strconv.Atoi(m[1])
		ids = append(ids, uint32(n))
	}
	var problems []string
	for _, m := range rePseudo.FindAllStringSubmatch(string(data), -1) {
		if r.reject[m[1]] {
			problems = append(problems, fmt.Sprintf("Could not create export for (%s) to (/somewhere)", m[1]))
		}
	}
	r.loads = append(r.loads, ids)
	return problems
}

func (r *fakeRunner) Start(ctx context.Context, spec LaunchSpec) (Process, []string, error) {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts++
	if r.failStarts > 0 {
		r.failStarts--
		return nil, nil, fmt.Errorf("%w: fake start failure", ErrUnavailable)
	}
	exports := filepath.Join(filepath.Dir(spec.ConfigPath), "exports.conf")
	p := &fakeProc{r: r, pid: 1000 + r.starts, exports: exports, done: make(chan struct{})}
	r.procs = append(r.procs, p)
	return p, r.load(exports), nil
}

func (r *fakeRunner) proc(i int) *fakeProc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.procs[i]
}

func (r *fakeRunner) counts() (starts, reloads int, loads [][]uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starts, r.reloads, slices.Clone(r.loads)
}

func (p *fakeProc) Pid() int              { return p.pid }
func (p *fakeProc) Done() <-chan struct{} { return p.done }

func (p *fakeProc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

func (p *fakeProc) die(err error) {
	p.once.Do(func() {
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(p.done)
	})
}

func (p *fakeProc) Terminate() error {
	p.mu.Lock()
	p.signals = append(p.signals, "TERM")
	ignore := p.ignoreTerm
	p.mu.Unlock()
	if !ignore {
		p.die(nil)
	}
	return nil
}

func (p *fakeProc) Kill() error {
	p.mu.Lock()
	p.signals = append(p.signals, "KILL")
	p.mu.Unlock()
	p.die(errors.New("signal: killed"))
	return nil
}

func (p *fakeProc) Reload(ctx context.Context) ([]string, error) {
	p.r.mu.Lock()
	delay := p.r.reloadDelay
	p.r.mu.Unlock()
	select {
	case <-p.done:
		return nil, ErrUnavailable
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(delay):
	}
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	p.r.reloads++
	return p.r.load(p.exports), nil
}

// newFake returns a Ganesha on a fake runner with n export directories.
func newFake(t *testing.T, n int) (*Ganesha, *fakeRunner, []Export) {
	t.Helper()
	dir := t.TempDir()
	r := &fakeRunner{reject: map[string]bool{}}
	g, err := NewGanesha(GaneshaConfig{
		RunDir:          filepath.Join(dir, "run"),
		RecoveryDir:     filepath.Join(dir, "recovery"),
		Clients:         []string{"127.0.0.0/8"},
		RestartDelay:    time.Millisecond,
		MaxRestartDelay: 4 * time.Millisecond,
		StopTimeout:     time.Second,
	}, WithRunner(r))
	if err != nil {
		t.Fatal(err)
	}
	g.dial = func(context.Context, string) error { return nil }
	var exports []Export
	for i := 1; i <= n; i++ {
		p := filepath.Join(dir, "vol", strconv.Itoa(i))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		exports = append(exports, Export{ID: uint32(i), Path: p, Pseudo: "/dots/v" + strconv.Itoa(i)})
	}
	t.Cleanup(func() {
		if err := g.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return g, r, exports
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 5*time.Second, what, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
}

func ids(exports []Export) []uint32 {
	out := make([]uint32, len(exports))
	for i, e := range exports {
		out[i] = e.ID
	}
	return out
}
