//go:build integration

package failover

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"

	"github.com/dots-csi/dots/internal/netns"
)

// The NFS client is the test binary itself, re-executed under `ip netns
// exec` in the client's namespace with clientEnv set: a separate process,
// as a node is. A whole process in the namespace, rather than a goroutine
// that enters it to dial, because the NFS library reconnects by itself
// from a goroutine of its own (rpc.Client.receive) after the server went
// away: those reconnects must come from the client node's address too,
// or a per-node export would refuse them, and only a process living in
// the namespace guarantees that for every socket it ever opens.
//
// It is a userspace NFSv3 client (github.com/willscott/go-nfs-client)
// that keeps one TCP client and one file handle: after a move it
// reconnects to the same address and goes on writing through the handle
// it got before, as a kernel client with an open file does. libnfs, one
// process per operation, cannot hold a handle.
const clientEnv = "DOTS_FAILOVER_CLIENT"

// clientConfig is what the client process is told (JSON in clientEnv).
type clientConfig struct {
	Server    string        // the VIP
	NFSPort   int           //
	MountPort int           // MOUNT protocol port (fixed: no rpcbind on the VIP)
	Export    string        // what to mount
	File      string        // the file the records go to
	Probe     string        // the file the NFSv4.1 client opens
	Interval  time.Duration // one record per interval
}

// recordSize is the size of one numbered record; record i is at offset
// i*recordSize, so a missing one reads as zeros.
const recordSize = 64

func record(seq int) []byte {
	b := fmt.Appendf(nil, "dots failover record %08d %08x", seq, uint32(seq)*2654435761)
	b = append(b, bytes.Repeat([]byte{'.'}, recordSize-1-len(b))...)
	return append(b, '\n')
}

// event is one line the client prints.
type event struct {
	Kind  string `json:"k"` // ready, ack, err, remount, verify, exit, v41-*
	Seq   int    `json:"s,omitempty"`
	At    int64  `json:"t"` // unix nanoseconds
	Stale bool   `json:"stale,omitempty"`
	Msg   string `json:"m,omitempty"`
	N     int    `json:"n,omitempty"`   // verify: records checked
	Bad   []int  `json:"bad,omitempty"` // verify: records missing or corrupt
}

// runClient is the client process: it mounts, then writes record after
// record with FILE_SYNC (acknowledged means on stable storage), reading
// each back, until told to stop on stdin; "verify N" reads records 0..N-1
// back through the handle.
func runClient(cfg clientConfig) error {
	enc := json.NewEncoder(os.Stdout)
	var encMu sync.Mutex
	emit := func(e event) {
		e.At = time.Now().UnixNano()
		encMu.Lock()
		defer encMu.Unlock()
		_ = enc.Encode(e)
	}
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds) // the test went away: stop
	}()

	m := &mount{cfg: cfg}
	defer m.close()
	deadline := time.Now().Add(time.Minute)
	for {
		err := m.open()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mounting %s:%s: %w", cfg.Server, cfg.Export, err)
		}
		time.Sleep(cfg.Interval) // the workload's cadence, not a synchronisation
	}
	emit(event{Kind: "ready"})
	stop41 := make(chan struct{})
	defer close(stop41)
	go runV41(newV41(net.JoinHostPort(cfg.Server, strconv.Itoa(cfg.NFSPort)), cfg.Export, cfg.Probe), 250*time.Millisecond, emit, stop41)

	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	buf := make([]byte, recordSize)
	for seq := 0; ; {
		select {
		case cmd, ok := <-cmds:
			if !ok || cmd == "stop" {
				emit(event{Kind: "exit", Seq: seq})
				return nil
			}
			if n, err := strconv.Atoi(strings.TrimPrefix(cmd, "verify ")); err == nil {
				emit(m.verify(n))
			}
			continue
		case <-tick.C:
		}
		if m.f == nil {
			if err := m.open(); err != nil {
				emit(event{Kind: "err", Seq: seq, Msg: "remount: " + err.Error()})
				continue
			}
			emit(event{Kind: "remount", Seq: seq})
		}
		err := m.write(seq, buf)
		if err == nil {
			emit(event{Kind: "ack", Seq: seq})
			seq++
			continue
		}
		stale := isStale(err)
		emit(event{Kind: "err", Seq: seq, Stale: stale, Msg: err.Error()})
		if stale {
			// The handle is dead: a kernel client returns ESTALE to
			// the application, which must open the file again (and a
			// stale mount root needs a new mount). Do both.
			m.close()
		}
	}
}

// mount is the client's NFS state: the NFS connection (which reconnects by
// itself) and the handle of the record file.
type mount struct {
	cfg    clientConfig
	target *nfsc.Target
	f      *nfsc.File
}

var auth = rpc.NewAuthUnix("failover-client", 0, 0).Auth()

func (m *mount) open() error {
	fh, err := mountRoot(m.cfg)
	if err != nil {
		return err
	}
	c, err := nfsc.DialServiceAtPort(m.cfg.Server, m.cfg.NFSPort)
	if err != nil {
		return err
	}
	target, err := nfsc.NewTargetWithClient(c, auth, fh, m.cfg.Export, 0)
	if err != nil {
		c.Close()
		return err
	}
	f, err := target.OpenFile(m.cfg.File, 0o644)
	if err != nil {
		target.Close()
		return err
	}
	m.target, m.f = target, f
	return nil
}

func (m *mount) close() {
	if m.target != nil {
		m.target.Close()
	}
	m.target, m.f = nil, nil
}

// write writes record seq at its offset and reads it back.
func (m *mount) write(seq int, buf []byte) error {
	want := record(seq)
	if _, err := m.f.Seek(int64(seq)*recordSize, io.SeekStart); err != nil {
		return err
	}
	if _, err := m.f.Write(want); err != nil {
		return fmt.Errorf("write %d: %w", seq, err)
	}
	n, err := m.f.ReadAt(buf, int64(seq)*recordSize)
	if n == recordSize {
		err = nil // io.EOF at the end of the file, with the data
	}
	if err != nil {
		return fmt.Errorf("read back %d: %w", seq, err)
	}
	if !bytes.Equal(buf, want) {
		return fmt.Errorf("read back %d: %q", seq, buf)
	}
	return nil
}

// verify reads records 0..n-1 and reports those missing or corrupt.
func (m *mount) verify(n int) event {
	e := event{Kind: "verify", N: n}
	if m.f == nil {
		e.Msg = "no handle"
		return e
	}
	data := make([]byte, 0, n*recordSize)
	chunk := make([]byte, 32<<10)
	for off := 0; off < n*recordSize; {
		k, err := m.f.ReadAt(chunk[:min(len(chunk), n*recordSize-off)], int64(off))
		data = append(data, chunk[:k]...)
		off += k
		if err != nil || k == 0 {
			if k == 0 && err == nil {
				err = io.ErrUnexpectedEOF
			}
			if !errors.Is(err, io.EOF) || off < n*recordSize {
				e.Msg = fmt.Sprintf("reading at %d: %v", off, err)
				break
			}
		}
	}
	for i := range n {
		if (i+1)*recordSize > len(data) || !bytes.Equal(data[i*recordSize:(i+1)*recordSize], record(i)) {
			e.Bad = append(e.Bad, i)
		}
	}
	return e
}

// mountRoot asks the MOUNT service for the export's root handle, on its
// fixed port (the library's own Mount looks the port up with rpcbind,
// which the VIP does not serve).
func mountRoot(cfg clientConfig) ([]byte, error) {
	c, err := nfsc.DialServiceAtPort(cfg.Server, cfg.MountPort)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	type mntArgs struct {
		rpc.Header
		Dirpath string
	}
	res, err := c.Call(&mntArgs{rpc.Header{Rpcvers: 2, Prog: nfsc.MountProg, Vers: nfsc.MountVers,
		Proc: nfsc.MountProc3MNT, Cred: auth, Verf: rpc.AuthNull}, cfg.Export})
	if err != nil {
		return nil, err
	}
	stat, err := xdr.ReadUint32(res)
	if err != nil {
		return nil, err
	}
	if stat != nfsc.MNT3Ok {
		return nil, fmt.Errorf("MOUNT %s: status %d", cfg.Export, stat)
	}
	return xdr.ReadOpaque(res)
}

// isStale: the server no longer knows the handle.
func isStale(err error) bool {
	var ne *nfsc.Error
	return errors.As(err, &ne) && (ne.ErrorNum == nfsc.NFS3ErrStale || ne.ErrorNum == nfsc.NFS3ErrBadHandle)
}

// client is the test's side of a client process.
type client struct {
	t      *testing.T
	stdin  io.WriteCloser
	exited chan error

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every event
	ready    bool
	acks     []time.Time // acks[seq]: when record seq was acknowledged
	errs     []event
	remounts []time.Time
	v41      []event // the NFSv4.1 client's changes of state
	verifies []event
	stderr   bytes.Buffer
}

// startClient runs the client process in node's namespace and returns
// once it has mounted.
func startClient(t *testing.T, node *netns.Node, cfg clientConfig) *client {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	// In the node's network namespace only (node.Command): a mount
	// namespace of its own would pin the pool's datasets as they were
	// mounted when it started, and the pool could not be exported.
	cmd := node.Command(ctx, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"="+string(js))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &client{t: t, exited: make(chan error, 1), changed: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &c.mu, w: &c.stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig follows the thread that forked: keep it until the
		// process is reaped, so a dead test leaves no client behind.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				c.record(e)
			}
		}
		c.exited <- cmd.Wait()
		cancel()
		c.mu.Lock()
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}()
	if err := <-started; err != nil {
		cancel()
		t.Fatalf("starting the client: %v", err)
	}
	t.Cleanup(c.stop)
	c.waitFor("the client mounted", time.Minute, func() bool { return c.ready })
	return c
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (c *client) record(e event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := time.Unix(0, e.At)
	switch e.Kind {
	case "ready":
		c.ready = true
	case "ack":
		if e.Seq == len(c.acks) {
			c.acks = append(c.acks, at)
		}
	case "err":
		c.errs = append(c.errs, e)
	case "remount":
		c.remounts = append(c.remounts, at)
	case "verify":
		c.verifies = append(c.verifies, e)
	case "v41-open", "v41-fail", "v41-session":
		c.v41 = append(c.v41, e)
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// waitFor waits until cond (called with c.mu held) holds: woken by the
// client's events, bounded by timeout.
func (c *client) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, ch := cond(), c.changed
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case err := <-c.exited:
			c.exited <- err
			c.t.Fatalf("%s: the client exited: %v\n%s", what, err, c.stderrTail())
		case <-deadline.C:
			c.t.Fatalf("%s: not within %s (acks %d, last errors %v)\n%s", what, timeout, c.acked(), c.lastErrs(3), c.stderrTail())
		}
	}
}

func (c *client) acked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acks)
}

// verify has the client read back the first n records through its handle.
func (c *client) verify(n int) event {
	c.t.Helper()
	c.mu.Lock()
	before := len(c.verifies)
	c.mu.Unlock()
	if _, err := fmt.Fprintf(c.stdin, "verify %d\n", n); err != nil {
		c.t.Fatalf("asking the client to verify: %v", err)
	}
	c.waitFor("the client's read-back", 2*time.Minute, func() bool { return len(c.verifies) > before })
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verifies[before]
}

// stop tells the client to exit and waits for it; calling it again
// (the test, then its cleanup) waits for nothing.
func (c *client) stop() {
	_, _ = io.WriteString(c.stdin, "stop\n")
	_ = c.stdin.Close()
	select {
	case err := <-c.exited:
		c.exited <- err
	case <-time.After(30 * time.Second):
		c.t.Errorf("the client did not stop within 30 s")
	}
}

func (c *client) lastErrs(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.errs[max(0, len(c.errs)-n):] {
		out = append(out, e.Msg)
	}
	return out
}

func (c *client) stderrTail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := strings.Split(strings.TrimRight(c.stderr.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
