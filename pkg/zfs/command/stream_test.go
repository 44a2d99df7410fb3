package command

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// checkingWriter collects a stream and, at its at-th write, records what
// the host says of the stream then (health, what is in flight).
type checkingWriter struct {
	buf     bytes.Buffer
	at      int
	writes  int
	check   func()
	checked bool
}

func (w *checkingWriter) Write(b []byte) (int, error) {
	w.writes++
	if w.writes == w.at {
		w.check()
		w.checked = true
	}
	return w.buf.Write(b)
}

// A stream whose bytes flow outlives --zfs-timeout and --zfs-stuck-after:
// it is bounded by progress, and not stuck while it makes some.
func TestStreamOutlivesTheDeadlineWhileBytesFlow(t *testing.T) {
	tm := Timeouts{Short: time.Minute, Long: 500 * time.Millisecond, StuckAfter: time.Second, StreamIdle: 2 * time.Second}
	h, _, _ := newHost(t, tm)
	var health error
	var age time.Duration
	w := &checkingWriter{at: 25, check: func() {
		health = h.Healthy()
		for _, r := range h.InFlight() {
			age = time.Since(r.Started)
		}
	}}
	c := Z("trickle", "30")
	c.Stdout = w
	if _, err := h.Run(context.Background(), c); err != nil {
		t.Fatalf("a stream of 30 bytes, one every 0.1 s, with --zfs-timeout %s: %v", tm.Long, err)
	}
	if got := w.buf.String(); got != strings.Repeat("x", 30) {
		t.Fatalf("stream = %q", got)
	}
	if !w.checked || age <= tm.StuckAfter {
		t.Fatalf("checked %t at age %s: the stream did not outlast StuckAfter %s", w.checked, age, tm.StuckAfter)
	}
	if health != nil {
		t.Fatalf("Healthy while bytes flowed = %v", health)
	}
}

// A stream that stops moving bytes is killed after StreamIdle, either way
// (a send whose output stops, a recv whose input stops), with its
// process group, as a timeout.
func TestStalledStreamIsKilled(t *testing.T) {
	tm := Timeouts{Short: time.Minute, Long: time.Hour, StuckAfter: 100 * time.Millisecond, StreamIdle: 300 * time.Millisecond}
	h, fifo, _ := newHost(t, tm)
	in := blockedReader{release: make(chan struct{})}
	defer close(in.release)
	for _, c := range []Cmd{{Tool: ZFS, Args: []string{"stall"}, Stdout: io.Discard},
		{Tool: ZFS, Args: []string{"drain"}, Stdin: io.MultiReader(strings.NewReader("some bytes"), in)}} {
		errc := make(chan error, 1)
		go func() {
			_, err := h.Run(context.Background(), c)
			errc <- err
		}()
		b, err := os.ReadFile(fifo) // the command runs
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
		select {
		case err = <-errc:
		case <-time.After(time.Minute):
			t.Fatalf("%s: a stalled stream was not killed", c)
		}
		var stalled *StalledError
		if !errors.As(err, &stalled) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: Run = %v, want a stalled stream", c, err)
		}
		wantDead(t, pid)
		if n := testutil.ToFloat64(h.metrics.commands.WithLabelValues("zfs", c.Subcommand(), "timeout")); n != 1 {
			t.Errorf("%s: timeout count = %v", c, n)
		}
	}
}

// A stream that moves nothing for StuckAfter is reported stuck before it
// is killed.
func TestQuietStreamIsStuck(t *testing.T) {
	tm := Timeouts{Short: time.Minute, Long: time.Hour, StuckAfter: time.Nanosecond, StreamIdle: time.Hour}
	h, fifo, _ := newHost(t, tm)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		c := Z("stall")
		c.Stdout = io.Discard
		_, err := h.Run(ctx, c)
		errc <- err
	}()
	if _, err := os.ReadFile(fifo); err != nil {
		t.Fatal(err)
	}
	if err := h.Healthy(); err == nil || !strings.Contains(err.Error(), "no byte for") {
		t.Fatalf("Healthy = %v, want the quiet stream", err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want Canceled (the caller's context still ends a stream)", err)
	}
}
