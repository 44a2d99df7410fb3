package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is one daemon the test started. Each runs in its own process group,
// so stopping it also stops what it started (ganesha under dots server).
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc starts bin with args, logging to dir/NAME.log, and registers
// its stop with t.Cleanup: cleanups run in reverse, so daemons stop in the
// reverse order of their start (the apiserver before etcd).
func startProc(t *testing.T, dir, name, bin string, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, dir, name, nil, bin, args...)
}

// startProcEnv is startProc with more environment variables.
func startProcEnv(t *testing.T, dir, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group; killed with the test binary if it dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop sends SIGTERM to the process group, then SIGKILL after a grace time.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Logf("%s did not stop in 20s after SIGTERM: killing it", p.name)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Anything left in the group (a grandchild that ignored SIGTERM).
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the last n lines of the log.
func (p *proc) tail(n int) string {
	data, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// klogProblem matches klog's error and warning lines ("E1122 08:19:48...").
var klogProblem = regexp.MustCompile(`^[EW]\d{4} `)

// problems returns the last max error and warning lines of the log.
func (p *proc) problems(max int) string {
	data, _ := os.ReadFile(p.log)
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if klogProblem.MatchString(l) || strings.Contains(l, "level=error") || strings.Contains(l, "level=warn") {
			out = append(out, l)
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return strings.Join(out, "\n")
}

// matching returns the last max log lines containing word.
func (p *proc) matching(max int, word string) string {
	data, _ := os.ReadFile(p.log)
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return strings.Join(out, "\n")
}

// freePort asks the kernel for a free loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls check until it returns nil or the timeout passes; a process
// that exits meanwhile fails the wait at once, with its log.
func waitFor(t *testing.T, what string, timeout time.Duration, p *proc, check func() error) {
	t.Helper()
	err := eventually(timeout, func() error {
		if err := check(); err == nil || p == nil || !p.exited() {
			return err
		}
		t.Fatalf("%s: %s exited (%v):\n%s", what, p.name, p.err, p.tail(40))
		return nil
	})
	if err != nil {
		msg := fmt.Sprintf("%s: not done after %s: %v", what, timeout, err)
		if p != nil {
			msg += "\n" + p.name + " log:\n" + p.tail(40)
		}
		t.Fatal(msg)
	}
}

// eventually is the e2e test's one polling loop: it calls check every
// 200 ms until it returns nil or timeout passes, and returns its last error.
func eventually(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// httpOK checks that url answers 200.
func httpOK(url string) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// run runs a short command and returns its combined output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	return runEnv(ctx, nil, name, args...)
}

// runEnv is run with more environment variables.
func runEnv(ctx context.Context, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
