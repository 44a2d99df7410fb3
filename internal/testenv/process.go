package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readyLine is what `dots server` logs once it serves.
const readyLine = "Storage server ready"

// ServerProcess is a `dots server` run as its own process (the real
// binary), so a test can kill it, stop it and start it again.
type ServerProcess struct {
	cmd  *exec.Cmd
	exit chan struct{} // closed once the process exited and was reaped
}

// StartServerProcess runs the dots binary with args, appending its stderr
// to logPath, and returns once the server logs that it is ready. A server
// that exits first, or is not ready within two minutes, fails the test,
// after onFail (e.g. keeping its log) when given.
func StartServerProcess(t testing.TB, name string, args []string, logPath string, onFail func()) *ServerProcess {
	t.Helper()
	cmd := exec.Command(DotsBinary(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	p := &ServerProcess{cmd: cmd, exit: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(p.exit)
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			if !signalled && strings.Contains(sc.Text(), readyLine) {
				close(ready)
				signalled = true
			}
		}
		_ = cmd.Wait()
	}()
	fail := func(format string, args ...any) {
		if onFail != nil {
			onFail()
		}
		t.Fatalf(format, args...)
	}
	select {
	case <-ready:
	case <-p.exit:
		fail("server %s exited before it was ready (%s)", name, cmd.ProcessState)
	case <-time.After(2 * time.Minute):
		p.Stop(syscall.SIGKILL)
		fail("server %s not ready within 2 minutes", name)
	}
	return p
}

// Stop sends sig to the server and waits until it exited.
func (p *ServerProcess) Stop(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	<-p.exit
}

// Signal sends sig to the server without waiting.
func (p *ServerProcess) Signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// Exited is closed once the server exited.
func (p *ServerProcess) Exited() <-chan struct{} { return p.exit }

// Pid is the server's process id.
func (p *ServerProcess) Pid() int { return p.cmd.Process.Pid }

// KeepLog copies a failed test's server log out of the test's temporary
// directory (which is removed) into the system's, as what-NAME-PID.log,
// and shows its last lines in the test's output.
func KeepLog(t testing.TB, what, name, logPath string, lines int) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return
	}
	kept := filepath.Join(os.TempDir(), fmt.Sprintf("%s-%s-%d.log", what, name, os.Getpid()))
	_ = os.WriteFile(kept, b, 0o644)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	t.Logf("server %s log kept in %s; its end:\n%s", name, kept, strings.Join(all[max(0, len(all)-lines):], "\n"))
}
