package command

import (
	"context"
	"errors"
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
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeTool writes a shell script standing in for zfs: it prints its
// arguments, fails on "fail", and on "hang" starts a child and waits, after
// writing both pids into the FIFO it returns (so the test knows they run,
// and can check both die).
func fakeTool(t *testing.T) (path, fifo string) {
	t.Helper()
	dir := t.TempDir()
	fifo = filepath.Join(dir, "pids")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "zfs")
	script := `#!/bin/sh
case "$1" in
fail) echo "cannot open 'p/x': dataset does not exist" >&2; exit 1 ;;
hang) sleep 300 & echo "$$ $!" > ` + fifo + `; wait ;;
sleep) echo "$$ $$" > ` + fifo + `; exec sleep 300 ;;
trickle) i=0; while [ $i -lt "$2" ]; do printf x; sleep 0.1; i=$((i+1)); done ;;
stall) printf x; echo "$$ $$" > ` + fifo + `; exec sleep 300 ;;
drain) echo "$$ $$" > ` + fifo + `; exec cat >/dev/null ;;
*) echo "args: $*" ;;
esac
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, fifo
}

func newHost(t *testing.T, tm Timeouts) (*Host, string, *prometheus.Registry) {
	t.Helper()
	tool, fifo := fakeTool(t)
	reg := prometheus.NewRegistry()
	h, err := NewHost(HostConfig{Binaries: map[string]string{ZFS: tool, Zpool: tool}, Timeouts: tm, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return h, fifo, reg
}

// wantDead waits until the processes are gone. A SIGKILL is delivered
// asynchronously: a killed process may still run for a moment.
func wantDead(t *testing.T, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		poll.Until(t, 10*time.Second, fmt.Sprintf("pid %d gone", pid), func() error {
			if alive(pid) {
				return errors.New("still running")
			}
			return nil
		})
	}
}

func alive(pid int) bool {
	// A zombie is not alive: read its state.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func TestRunOutputAndErrors(t *testing.T) {
	h, _, reg := newHost(t, DefaultTimeouts)
	out, err := h.Run(context.Background(), Z("get", "-Hp", "a b"))
	if err != nil || string(out) != "args: get -Hp a b\n" {
		t.Fatalf("Run = %q, %v", out, err)
	}
	_, err = h.Run(context.Background(), Pool("fail"))
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "does not exist") || ce.Cmd != "zpool fail" {
		t.Fatalf("failure = %#v", err)
	}
	if n := testutil.ToFloat64(h.metrics.commands.WithLabelValues("zfs", "get", "ok")); n != 1 {
		t.Errorf("ok count = %v", n)
	}
	if n := testutil.ToFloat64(h.metrics.commands.WithLabelValues("zpool", "fail", "error")); n != 1 {
		t.Errorf("error count = %v", n)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Run(ctx, Z("get")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}

// startHang runs the fake tool's "hang" in the background and returns its
// pid and its child's, read from the FIFO the script writes them to, and
// the channel Run's error arrives on.
func startHang(t *testing.T, h *Host, ctx context.Context, fifo string) (int, int, <-chan error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := h.Run(ctx, Z("hang"))
		errc <- err
	}()
	b, err := os.ReadFile(fifo) // blocks until the script has written
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		t.Fatalf("pids: %q", b)
	}
	sh, _ := strconv.Atoi(f[0])
	child, _ := strconv.Atoi(f[1])
	return sh, child, errc
}

func TestDeadlineKillsTheProcessGroup(t *testing.T) {
	h, fifo, reg := newHost(t, Timeouts{Short: time.Minute, Long: 500 * time.Millisecond, StuckAfter: time.Hour})
	start := time.Now()
	sh, child, errc := startHang(t, h, context.Background(), fifo)
	err := <-errc
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want DeadlineExceeded", err)
	}
	if took > 500*time.Millisecond+reapWait {
		t.Errorf("Run returned after %s", took)
	}
	wantDead(t, sh, child)
	if n := testutil.ToFloat64(h.metrics.commands.WithLabelValues("zfs", "hang", "timeout")); n != 1 {
		t.Errorf("timeout count = %v", n)
	}
	if len(h.InFlight()) != 0 {
		t.Errorf("still tracked: %v", h.InFlight())
	}
	_ = reg
}

func TestCallerCancelKillsAndHealthReportsStuck(t *testing.T) {
	h, fifo, _ := newHost(t, Timeouts{Short: time.Minute, Long: time.Minute, StuckAfter: time.Nanosecond})
	ctx, cancel := context.WithCancel(context.Background())
	sh, child, errc := startHang(t, h, ctx, fifo)
	// Running past StuckAfter: reported, with its command line.
	if err := h.Healthy(); err == nil || !strings.Contains(err.Error(), `"zfs hang"`) {
		t.Fatalf("Healthy = %v, want the stuck command", err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want Canceled", err)
	}
	wantDead(t, sh, child)
	if err := h.Healthy(); err != nil {
		t.Fatalf("Healthy after the command ended = %v", err)
	}
}

func TestTimeoutClasses(t *testing.T) {
	tm := Timeouts{Short: time.Second, Long: time.Hour, StuckAfter: time.Minute}
	for c, want := range map[*Cmd]time.Duration{
		{Tool: ZFS, Args: []string{"get", "all"}}:        time.Second,
		{Tool: ZFS, Args: []string{"set", "a=b", "p"}}:   time.Second,
		{Tool: ZFS, Args: []string{"destroy", "p/x"}}:    time.Hour,
		{Tool: ZFS, Args: []string{"recv", "p/x"}}:       time.Hour,
		{Tool: Zpool, Args: []string{"import", "p"}}:     time.Hour,
		{Tool: Zpool, Args: []string{"list", "-H", "p"}}: time.Second,
	} {
		if got := tm.For(*c); got != want {
			t.Errorf("For(%s) = %s, want %s", c, got, want)
		}
	}
	if (Timeouts{Short: 1, Long: 0, StuckAfter: 1}).Validate() == nil {
		t.Error("zero timeout accepted")
	}
}

// TestHelperRunsASleep is not a test: TestDiesWithItsParent starts the test
// binary to run it, as the process that gets killed.
func TestHelperRunsASleep(t *testing.T) {
	tool := os.Getenv("DOTS_TEST_FAKE_ZFS")
	if tool == "" {
		t.Skip("helper process only")
	}
	h, err := NewHost(HostConfig{Binaries: map[string]string{ZFS: tool, Zpool: tool}, Timeouts: DefaultTimeouts})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Run(context.Background(), Z("sleep"))
	t.Fatalf("the sleep returned: %v", err)
}

func TestDiesWithItsParent(t *testing.T) {
	tool, fifo := fakeTool(t)
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperRunsASleep$")
	helper.Env = append(os.Environ(), "DOTS_TEST_FAKE_ZFS="+tool)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fifo)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
	if !alive(pid) {
		t.Fatalf("command %d not running", pid)
	}
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	wantDead(t, pid)
}

// blockedReader blocks every Read until released: a peer that stopped
// sending without closing its stream.
type blockedReader struct{ release chan struct{} }

func (r blockedReader) Read([]byte) (int, error) {
	<-r.release
	return 0, errors.New("released")
}

func TestStreamInputDoesNotOutliveTheCommand(t *testing.T) {
	h, _, _ := newHost(t, DefaultTimeouts)
	in := blockedReader{release: make(chan struct{})}
	defer close(in.release)
	done := make(chan error, 2)
	go func() {
		c := Z("recv", "-F", "p/x")
		c.Stdin = in
		_, err := h.Run(context.Background(), c)
		done <- err
	}()
	go func() {
		c := Z("fail")
		c.Stdin = in
		_, err := h.Run(context.Background(), c)
		done <- err
	}()
	// Both exit at once without reading their input: Run reports how
	// they ended instead of waiting for the stream.
	var ok, failed int
	for range 2 {
		select {
		case err := <-done:
			var ce *Error
			switch {
			case err == nil:
				ok++
			case errors.As(err, &ce):
				failed++
			default:
				t.Errorf("Run: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("Run waits for a stream its command does not read")
		}
	}
	if ok != 1 || failed != 1 {
		t.Errorf("ok %d, failed %d; want one each", ok, failed)
	}
}

// TestKernelWaitNamesWhereAProcessSleeps: the clue logged before a kill is
// read from the process itself, and a process that is gone gives nothing.
func TestKernelWaitNamesWhereAProcessSleeps(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	poll.Until(t, 10*time.Second, "sleep to sleep", func() error {
		if w, _ := kernelWait(pid); !strings.Contains(w, "sleep") {
			return fmt.Errorf("wchan %q", w)
		}
		return nil
	})
	cmd.Process.Kill()
	cmd.Wait()
	if w, s := kernelWait(pid); w != "" || s != "" {
		t.Errorf("an exited process: wchan %q stack %q, want nothing", w, s)
	}
}
