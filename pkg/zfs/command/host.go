package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// reapWait is how long Run waits, after killing a command's process group,
// for the command to exit. A process in uninterruptible sleep inside the
// kernel cannot be killed at once: Run then returns anyway, and the command
// is reported by Healthy until it exits.
const reapWait = 5 * time.Second

// HostConfig configures a Host.
type HostConfig struct {
	// Binaries maps a tool to the program run for it; a tool not listed
	// runs the program of its name found in PATH.
	Binaries map[string]string
	Timeouts Timeouts
	// Registerer receives the command metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Host runs the real zfs and zpool. It is safe for concurrent use.
type Host struct {
	binaries map[string]string
	timeouts Timeouts
	metrics  *metrics
	now      func() time.Time

	mu      sync.Mutex
	nextID  uint64
	running map[uint64]*Running
}

// Running describes a command in flight.
type Running struct {
	Cmd      string
	Pid      int
	Started  time.Time
	Deadline time.Time // a stream: when it is killed if no byte moves
	Killed   bool      // its deadline passed or its caller gave up
	// LastByte: a stream's last progress (zero for other commands).
	LastByte time.Time

	progress *progress // a stream's, nil otherwise
}

// NewHost resolves the binaries and returns a Host.
func NewHost(cfg HostConfig) (*Host, error) {
	if err := cfg.Timeouts.Validate(); err != nil {
		return nil, err
	}
	h := &Host{binaries: map[string]string{}, timeouts: cfg.Timeouts, metrics: newMetrics(cfg.Registerer),
		now: time.Now, running: map[uint64]*Running{}}
	for _, tool := range []string{ZFS, Zpool} {
		name := tool
		if b := cfg.Binaries[tool]; b != "" {
			name = b
		}
		path, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (install OpenZFS, or zfs-fuse for development: hack/deps.sh)", tool, err)
		}
		h.binaries[tool] = path
	}
	return h, nil
}

// Run implements Runner.
func (h *Host) Run(ctx context.Context, c Cmd) ([]byte, error) {
	path, ok := h.binaries[c.Tool]
	if !ok {
		return nil, fmt.Errorf("unknown tool %q", c.Tool)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	var prog *progress
	if isStream(c) {
		prog = newProgress(h.now)
		sctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		defer watchStream(sctx, cancel, prog, h.timeouts.streamIdle())()
		ctx = sctx
	} else {
		dctx, cancel := context.WithTimeout(ctx, h.timeouts.For(c))
		defer cancel()
		ctx = dctx
	}

	cmd := exec.Command(path, c.Args...)
	// Its own process group, so a kill reaches whatever it started; and
	// SIGKILL from the kernel if this process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, &stderr
	if c.Stdout == nil {
		cmd.Stdout = &stdout
	} else {
		cmd.Stdout = progressWriter{w: c.Stdout, p: prog}
	}
	// A stream is fed through a pipe of Run's own, not exec's: exec's
	// Wait waits for its copy goroutine, which a reader that blocks (a
	// peer that stopped sending) would hold forever after the command
	// exited. This one is closed when the command exits.
	var feed *stdinFeed
	if c.Stdin != nil {
		var err error
		if feed, err = newStdinFeed(progressReader{r: c.Stdin, p: prog}); err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
		cmd.Stdin = feed.child
	}
	// Tracked before it starts, so Healthy and InFlight see it from its
	// first instruction on.
	start := h.now()
	deadline, _ := ctx.Deadline()
	id := h.track(&Running{Cmd: c.String(), Started: start, Deadline: deadline, progress: prog})
	err := cmd.Start()
	if feed != nil {
		feed.started(err == nil)
	}
	if err != nil {
		h.untrack(id)
		h.metrics.done(c, "error", 0)
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	h.setPid(id, cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		if feed != nil {
			feed.close() // the rest of the stream was not the command's to read
		}
		h.untrack(id)
		exited <- err
	}()

	select {
	case err = <-exited:
	case <-ctx.Done():
		select {
		case err = <-exited: // it finished just now: nothing to kill
		default:
			err = h.kill(c, id, cmd.Process.Pid, exited, context.Cause(ctx))
		}
	}
	elapsed := h.now().Sub(start)
	klog.V(5).InfoS("zfs command", "cmd", c.String(), "duration", elapsed, "err", err)
	switch {
	case err == nil:
		h.metrics.done(c, "ok", elapsed)
		return stdout.Bytes(), nil
	case errors.Is(err, context.DeadlineExceeded):
		h.metrics.done(c, "timeout", elapsed)
		return nil, err
	case errors.Is(err, context.Canceled):
		h.metrics.done(c, "canceled", elapsed)
		return nil, err
	}
	h.metrics.done(c, "error", elapsed)
	return stdout.Bytes(), &Error{Cmd: c.String(), Stderr: stderr.String(), Err: err}
}

// kill ends a command whose context is done: SIGKILL to its process group
// (zfs has nothing to clean up that a kill would skip; ZFS itself keeps
// every change atomic), then a bounded wait for it to exit.
func (h *Host) kill(c Cmd, id uint64, pid int, exited <-chan error, why error) error {
	h.mu.Lock()
	if r := h.running[id]; r != nil {
		r.Killed = true
	}
	h.mu.Unlock()
	// Where it waited, read before the kill: what a hung zfs (a wedged
	// zfs-fuse, a suspended pool) was waiting for is the clue an operator
	// needs, and it is gone once the process is.
	wchan, stack := kernelWait(pid)
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		klog.ErrorS(err, "Killing a zfs command", "cmd", c.String(), "pid", pid)
	}
	klog.InfoS("Killed a zfs command", "cmd", c.String(), "pid", pid, "reason", why, "wchan", wchan, "kernelStack", stack)
	t := time.NewTimer(reapWait)
	defer t.Stop()
	select {
	case <-exited:
		return fmt.Errorf("%s: killed: %w", c, why)
	case <-t.C:
		klog.ErrorS(why, "A killed zfs command has not exited; it is reported until it does", "cmd", c.String(), "pid", pid)
		return fmt.Errorf("%s: killed but still running: %w", c, why)
	}
}

func (h *Host) track(r *Running) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextID++
	h.running[h.nextID] = r
	h.metrics.inFlight.Set(float64(len(h.running)))
	return h.nextID
}

func (h *Host) setPid(id uint64, pid int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.running[id]; r != nil {
		r.Pid = pid
	}
}

func (h *Host) untrack(id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.running, id)
	h.metrics.inFlight.Set(float64(len(h.running)))
}

// InFlight lists the commands running now, oldest first.
func (h *Host) InFlight() []Running {
	h.mu.Lock()
	out := make([]Running, 0, len(h.running))
	for _, r := range h.running {
		c := *r
		if c.progress != nil {
			c.LastByte = c.progress.at()
			c.Deadline = c.LastByte.Add(h.timeouts.streamIdle())
		}
		out = append(out, c)
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

// Healthy reports an error naming every command that has run longer than
// StuckAfter (a stream: gone that long without a byte): a hung command
// means the pool (or the ZFS daemon) is not answering, and whatever waits
// on it will time out.
func (h *Host) Healthy() error {
	now := h.now()
	var stuck []string
	for _, r := range h.InFlight() {
		age := now.Sub(r.Started)
		switch {
		case r.Killed:
		case r.progress != nil && now.Sub(r.LastByte) <= h.timeouts.StuckAfter:
			continue // a long stream whose bytes flow
		case r.progress == nil && age <= h.timeouts.StuckAfter:
			continue
		}
		msg := fmt.Sprintf("%q (pid %d) running for %s", r.Cmd, r.Pid, age.Round(time.Second))
		if r.progress != nil {
			msg += fmt.Sprintf(", no byte for %s", now.Sub(r.LastByte).Round(time.Second))
		}
		stuck = append(stuck, msg)
	}
	h.metrics.stuck.Set(float64(len(stuck)))
	if len(stuck) > 0 {
		return fmt.Errorf("zfs commands stuck: %s", strings.Join(stuck, "; "))
	}
	return nil
}

// stdinFeed copies a reader into a command's standard input.
type stdinFeed struct {
	src    io.Reader
	child  *os.File // the command's end
	parent *os.File // written by the copy
}

func newStdinFeed(src io.Reader) (*stdinFeed, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &stdinFeed{src: src, child: r, parent: w}, nil
}

// started closes the child's end here (the command holds its own copy)
// and starts the copy when the command runs.
func (f *stdinFeed) started(ok bool) {
	_ = f.child.Close()
	if !ok {
		_ = f.parent.Close()
		return
	}
	go func() {
		// Ends when the source ends (EOF: the command sees it) or fails,
		// or when a write fails because the command exited.
		_, _ = io.Copy(f.parent, f.src)
		_ = f.parent.Close()
	}()
}

// close ends the feed: the command exited.
func (f *stdinFeed) close() { _ = f.parent.Close() }

// kernelWait reads where process pid sleeps in the kernel: its wait
// channel, and its kernel stack where this process may read it (root).
// Best effort: a process that already exited gives empty strings.
func kernelWait(pid int) (wchan, stack string) {
	proc := fmt.Sprintf("/proc/%d/", pid)
	if b, err := os.ReadFile(proc + "wchan"); err == nil {
		wchan = string(b)
	}
	if b, err := os.ReadFile(proc + "stack"); err == nil {
		stack = strings.TrimSpace(string(b))
	}
	return wchan, stack
}
