//go:build integration

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
)

// proc is a dots daemon run as its own process (the real binary), so its
// memory and CPU are its own to measure.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startProc runs `dots ARGS...`, logging to dir/NAME.log, and waits until
// ready answers (within 2 minutes). It is stopped when the test ends.
func startProc(t testing.TB, dir, name string, ready func() error, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(testenv.DotsBinary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.keepLog(t)
		}
	})
	if err := poll.Wait(2*time.Minute, func() error {
		select {
		case <-p.done:
			return nil // reported below
		default:
		}
		return ready()
	}); err != nil {
		t.Fatalf("%s not ready: %v\n%s", name, err, p.tail())
	}
	select {
	case <-p.done:
		t.Fatalf("%s exited:\n%s", name, p.tail())
	default:
	}
	return p
}

// stop ends the process with SIGTERM (SIGKILL after a minute) and waits.
func (p *proc) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Errorf("%s did not stop within a minute; killing it", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// keepLog copies a failed run's log out of its temporary directory.
func (p *proc) keepLog(t testing.TB) {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return
	}
	kept := filepath.Join(os.TempDir(), fmt.Sprintf("dots-bench-%s-%d-%d.log", p.name, os.Getpid(), p.pid()))
	if os.WriteFile(kept, b, 0o644) == nil {
		t.Logf("%s's log kept in %s", p.name, kept)
	}
}

// tail is the end of the process's log.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// memory is a process's resident set now and at its peak, in MiB.
type memory struct{ RSS, Peak float64 }

func memOf(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			m.RSS = kb / 1024
		case "VmHWM":
			m.Peak = kb / 1024
		}
	}
	return m, nil
}

// cpuOf is the CPU time a process has used (user + system).
func cpuOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields after the command: state is 0, utime 11, stime 12 (clock
	// ticks of 1/100 s on Linux).
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }
