package nfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// LaunchSpec is what a Runner needs to start ganesha. The config files are
// already written when Start is called.
type LaunchSpec struct {
	Binary     string
	ConfigPath string
	LogPath    string
	PidPath    string
	OutPath    string   // the child's stdout and stderr
	ListenAddr string   // what ganesha will bind; must be free before start
	ProbeAddr  string   // where to dial to see that it is up
	Env        []string // added to the inherited environment (the DBus address)
}

// Runner starts ganesha processes. The real one execs ganesha.nfsd; unit
// tests of the supervision logic use a fake.
type Runner interface {
	// Start launches the server and returns once it accepts connections,
	// with the problems (CRIT/MAJ messages) it logged while starting.
	Start(ctx context.Context, spec LaunchSpec) (Process, []string, error)
}

// Process is one running ganesha.
type Process interface {
	Pid() int
	// Reload makes the server re-read its exports and waits until it has;
	// it returns the problems logged meanwhile.
	Reload(ctx context.Context) ([]string, error)
	// Terminate asks for a clean shutdown; Kill forces one.
	Terminate() error
	Kill() error
	// Done is closed when the process has exited and been reaped.
	Done() <-chan struct{}
	// ExitErr is the exit status once Done is closed.
	ExitErr() error
}

// ExecRunner runs the real ganesha.nfsd.
type ExecRunner struct{}

// pollInterval paces the log and port polling. A reload of a few exports
// takes about 30 ms, so 5 ms keeps the added latency small.
const pollInterval = 5 * time.Millisecond

// startPollInterval paces the readiness probe; a start takes about 120 ms.
const startPollInterval = 20 * time.Millisecond

// settleTime: ganesha logs per-block config errors right after "Reread
// exports complete", in the same thread; the reload counts as finished
// once the log has been quiet this long after the marker.
const settleTime = 15 * time.Millisecond

// maxLogSize: at start, a larger log is moved aside to LOG.old.
const maxLogSize = 16 << 20

// Start implements Runner. A ganesha that exits while starting because it
// could not register with rpcbind is started again, a few times within
// ctx: ganesha unregisters and registers its programs at start, and two
// NFS servers doing so at the same moment on one rpcbind make one of them
// fail; the next try finds the registrations settled.
func (r ExecRunner) Start(ctx context.Context, spec LaunchSpec) (Process, []string, error) {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		p, problems, err := r.startOnce(ctx, spec)
		if !errors.Is(err, errRegistration) || attempt == maxRegistrationAttempts {
			return p, problems, err
		}
		klog.InfoS("Ganesha could not register with rpcbind while starting (another NFS server registering at the same moment?); starting it again",
			"attempt", attempt, "err", err, "delay", backoff)
		select {
		case <-ctx.Done():
			return nil, nil, err
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// maxRegistrationAttempts bounds Start's tries after rpcbind refusals.
const maxRegistrationAttempts = 4

// errRegistration marks a start that failed at ganesha's rpcbind
// registration ("Cannot register NFS V3 on TCP").
var errRegistration = errors.New("rpcbind registration failed")

func (ExecRunner) startOnce(ctx context.Context, spec LaunchSpec) (Process, []string, error) {
	// A listener left by another process (a stale ganesha, another server
	// on the same port) would answer our readiness probe in place of ours.
	l, err := net.Listen("tcp", spec.ListenAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: NFS port not free: %v", ErrUnavailable, err)
	}
	_ = l.Close()
	if err := os.Remove(spec.PidPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	if fi, err := os.Stat(spec.LogPath); err == nil && fi.Size() > maxLogSize {
		_ = os.Rename(spec.LogPath, spec.LogPath+".old")
	}
	tail := &logTail{path: spec.LogPath, off: fileSize(spec.LogPath)}

	out, err := os.OpenFile(spec.OutPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	defer out.Close() // the child has its own copy once started
	cmd := exec.Command(spec.Binary,
		"-F",                  // foreground: we are the supervisor
		"-f", spec.ConfigPath, //
		"-L", spec.LogPath, //
		"-p", spec.PidPath, //
		"-N", "NIV_EVENT", // the level of the reload markers
	)
	cmd.Stdout, cmd.Stderr = out, out
	if len(spec.Env) > 0 {
		cmd.Env = append(os.Environ(), spec.Env...)
	}
	c, err := startChild(cmd)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: starting %s: %v", ErrUnavailable, spec.Binary, err)
	}
	p := &execProc{child: c, logPath: spec.LogPath}

	fail := func(err error) (Process, []string, error) {
		_ = p.Kill()
		<-p.done
		lines, _ := tail.lines()
		return nil, nil, fmt.Errorf("%w: %v; log: %s", ErrUnavailable, err, lastProblems(lines, 5))
	}
	scan := &startScan{}
	tick := time.NewTicker(startPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-p.done:
			lines, _ := tail.lines()
			err := fmt.Errorf("%w: ganesha exited while starting (%v); log: %s", ErrUnavailable, p.err, lastProblems(lines, 5))
			if registrationFailed(lines) {
				err = fmt.Errorf("%w: %w", errRegistration, err)
			}
			return nil, nil, err
		case <-tick.C:
		}
		conn, err := net.DialTimeout("tcp", spec.ProbeAddr, time.Second)
		if err != nil {
			continue
		}
		_ = conn.Close()
		// Exports are loaded before the port opens, so every problem
		// they caused is in the log by now.
		lines, err := tail.lines()
		if err != nil {
			return fail(err)
		}
		for _, l := range lines {
			scan.feed(l)
		}
		return p, scan.problems, nil
	}
}

// registrationFailed says whether a start's log shows ganesha refused by
// rpcbind.
func registrationFailed(lines []string) bool {
	for _, l := range lines {
		if strings.Contains(l, "Cannot register ") {
			return true
		}
	}
	return false
}

// lastProblems summarises why a start failed.
func lastProblems(lines []string, n int) string {
	var msgs []string
	for _, l := range lines {
		if msg, ok := problem(l); ok {
			msgs = append(msgs, msg)
		}
	}
	if len(msgs) > n {
		msgs = msgs[len(msgs)-n:]
	}
	if len(msgs) == 0 {
		return "(no errors logged)"
	}
	return strings.Join(msgs, "; ")
}

type execProc struct {
	*child
	logPath string
}

// child is a process we started and reap; it dies with us.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startChild starts cmd in its own process group, to be killed by the
// kernel if we die, and reaps it in the background.
func startChild(cmd *exec.Cmd) (*child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a ^C or a signal to our group does not
		// reach it; we stop it ourselves.
		Setpgid: true,
		// If we die without stopping it, the kernel kills it, so no
		// orphan keeps the port.
		Pdeathsig: syscall.SIGKILL,
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the forking OS thread exits, not the
		// process. Holding the thread until the child is reaped means no
		// other goroutine can lock it and take it down with it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

func (p *child) Pid() int              { return p.cmd.Process.Pid }
func (p *child) Done() <-chan struct{} { return p.done }

func (p *child) ExitErr() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

func (p *child) Terminate() error { return p.signal(syscall.SIGTERM) }
func (p *child) Kill() error      { return p.signal(syscall.SIGKILL) }

func (p *child) signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil // already reaped: the pid may belong to someone else now
	default:
	}
	err := p.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Reload implements Process: SIGHUP, then follow the log until ganesha says
// the reload is complete and has finished reporting rejected blocks.
func (p *execProc) Reload(ctx context.Context) ([]string, error) {
	tail := &logTail{path: p.logPath, off: fileSize(p.logPath)}
	if err := p.signal(syscall.SIGHUP); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	scan := &reloadScan{}
	var quietSince time.Time
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return scan.problems, fmt.Errorf("%w: waiting for export reload: %v", ErrUnavailable, ctx.Err())
		case <-p.done:
			return scan.problems, fmt.Errorf("%w: ganesha exited during export reload (%v)", ErrUnavailable, p.err)
		case <-tick.C:
		}
		lines, err := tail.lines()
		if err != nil {
			return scan.problems, err
		}
		for _, l := range lines {
			scan.feed(l)
		}
		if !scan.done {
			continue
		}
		if len(lines) > 0 || quietSince.IsZero() {
			quietSince = time.Now()
			continue
		}
		if time.Since(quietSince) >= settleTime {
			if scan.failed != "" {
				return scan.problems, fmt.Errorf("export reload failed: %s", scan.failed)
			}
			return scan.problems, nil
		}
	}
}

// logTail reads complete lines appended to a file since an offset.
type logTail struct {
	path string
	off  int64
}

func (t *logTail) lines() ([]string, error) {
	f, err := os.Open(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < t.off {
		t.off = 0 // truncated or replaced
	}
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return nil, nil // only a partial line so far
	}
	t.off += int64(end + 1)
	return strings.Split(string(data[:end]), "\n"), nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
