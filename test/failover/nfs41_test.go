//go:build integration

package failover

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// A minimal NFSv4.1 client, for what the grace period does to the clients
// a kernel would have: one that holds a session, is recorded in the
// server's recovery database, and after a restart reclaims (EXCHANGE_ID,
// CREATE_SESSION, RECLAIM_COMPLETE) as Linux does, then opens a file
// again. libnfs speaks NFSv4.0, which has no RECLAIM_COMPLETE, so with it
// alone a restart always lasts the whole grace period; ganesha ends grace
// early only once every client it recorded has sent RECLAIM_COMPLETE
// (nfs_try_lift_grace in ganesha 4.3's SAL/nfs4_recovery.c). Only the
// operations that needs are encoded (RFC 8881), and only the fields read
// that are needed.

// NFSv4 operations and statuses used here.
const (
	opClose           = 4
	opLookup          = 15
	opOpen            = 18
	opPutRootFH       = 24
	opExchangeID      = 42
	opCreateSession   = 43
	opSequence        = 53
	opReclaimComplete = 58

	nfs4OK                 = 0
	nfs4ErrGrace           = 10013
	nfs4ErrStaleClient     = 10022
	nfs4ErrBadSession      = 10052
	nfs4ErrDeadSession     = 10078
	nfs4ErrExpired         = 10011
	nfs4ErrCompleteAlready = 10054
)

// xw encodes XDR.
type xw struct{ bytes.Buffer }

func (w *xw) u32(v uint32) { _ = binary.Write(w, binary.BigEndian, v) }
func (w *xw) u64(v uint64) { _ = binary.Write(w, binary.BigEndian, v) }
func (w *xw) fixed(b []byte) {
	w.Write(b)
	w.Write(make([]byte, (4-len(b)%4)%4))
}
func (w *xw) opaque(b []byte) { w.u32(uint32(len(b))); w.fixed(b) }

// xr decodes XDR; the first error sticks.
type xr struct {
	b   []byte
	err error
}

func (r *xr) next(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = cmpErr(r.err, io.ErrUnexpectedEOF)
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}
func (r *xr) u32() uint32        { return binary.BigEndian.Uint32(r.next(4)) }
func (r *xr) u64() uint64        { return binary.BigEndian.Uint64(r.next(8)) }
func (r *xr) fixed(n int) []byte { return r.next(n + (4-n%4)%4)[:n] }
func (r *xr) opaque() []byte     { return r.fixed(int(r.u32())) }

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// nfsStatusError is a compound that failed with an NFSv4 status.
type nfsStatusError struct {
	op, status uint32
}

func (e *nfsStatusError) Error() string { return fmt.Sprintf("NFSv4 op %d: status %d", e.op, e.status) }

func statusOf(err error) uint32 {
	var se *nfsStatusError
	if errors.As(err, &se) {
		return se.status
	}
	return 0
}

// v41 is one NFSv4.1 client: its identity (owner and verifier) is fixed
// for its life, as a kernel client's is, so the server can tell it is the
// client it recorded.
type v41 struct {
	addr     string
	owner    []byte
	verifier [8]byte
	path     []string // from the pseudo root to the directory of file
	file     string

	conn      net.Conn
	rd        *bufio.Reader
	xid       uint32
	clientid  uint64
	session   [16]byte
	seq       uint32 // the next sequence id of slot 0
	connected bool   // a session is established
}

func newV41(addr, export, file string) *v41 {
	c := &v41{addr: addr, owner: []byte("dots-failover-client"), file: file}
	_, _ = rand.Read(c.verifier[:])
	for _, p := range strings.Split(export, "/") {
		if p != "" {
			c.path = append(c.path, p)
		}
	}
	return c
}

func (c *v41) drop() {
	if c.conn != nil {
		_ = c.conn.Close()
	}
	c.conn, c.connected = nil, false
}

// establish connects and sets up a session: EXCHANGE_ID, CREATE_SESSION,
// then RECLAIM_COMPLETE: this client reclaims no state (it gives its opens
// up), and says so, which is what lets the server end grace early.
func (c *v41) establish() error {
	c.drop()
	conn, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
	if err != nil {
		return err
	}
	c.conn, c.rd = conn, bufio.NewReader(conn)
	r, err := c.compound(1, func(w *xw) {
		w.u32(opExchangeID)
		w.fixed(c.verifier[:])
		w.opaque(c.owner)
		w.u32(0) // flags: the server picks
		w.u32(0) // SP4_NONE
		w.u32(0) // no implementation id
	})
	if err != nil {
		return err
	}
	c.clientid = r.u64()
	csSeq := r.u32()
	r, err = c.compound(1, func(w *xw) {
		w.u32(opCreateSession)
		w.u64(c.clientid)
		w.u32(csSeq)
		w.u32(0) // flags: no back channel
		for _, a := range [][6]uint32{{0, 1 << 20, 1 << 20, 4096, 8, 4}, {0, 4096, 4096, 0, 2, 1}} {
			for _, v := range a {
				w.u32(v)
			}
			w.u32(0) // no RDMA
		}
		w.u32(0x40000000) // callback program (unused)
		w.u32(1)          // one callback security flavour:
		w.u32(0)          // AUTH_NONE
	})
	if err != nil {
		return err
	}
	copy(c.session[:], r.fixed(16))
	c.seq = 1
	_, err = c.compound(2, func(w *xw) {
		c.sequence(w)
		w.u32(opReclaimComplete)
		w.u32(0) // for all file systems
	})
	// A new session of a client the server still knows (a dropped
	// connection, not a restart) has nothing left to reclaim.
	if err != nil && statusOf(err) != nfs4ErrCompleteAlready {
		return err
	}
	c.connected = true
	return nil
}

func (c *v41) sequence(w *xw) {
	w.u32(opSequence)
	w.fixed(c.session[:])
	w.u32(c.seq)
	w.u32(0) // slot
	w.u32(0) // highest slot
	w.u32(0) // do not cache
	c.seq++
}

// open opens the file for reading (a new open: CLAIM_NULL), as an
// application opening a file does; it renews the lease too.
func (c *v41) open() error {
	ops := 3 + len(c.path)
	_, err := c.compound(uint32(ops), func(w *xw) {
		c.sequence(w)
		w.u32(opPutRootFH)
		for _, p := range c.path {
			w.u32(opLookup)
			w.opaque([]byte(p))
		}
		w.u32(opOpen)
		w.u32(0) // seqid (unused in 4.1)
		w.u32(1) // OPEN4_SHARE_ACCESS_READ
		w.u32(0) // deny none
		w.u64(c.clientid)
		w.opaque([]byte("dots-failover-open"))
		w.u32(0) // OPEN4_NOCREATE
		w.u32(0) // CLAIM_NULL
		w.opaque([]byte(c.file))
	})
	return err
}

// compound sends one COMPOUND of n operations and returns the reply
// positioned at the first operation's result body, or the status of the
// first operation that failed.
func (c *v41) compound(n uint32, ops func(*xw)) (*xr, error) {
	if c.conn == nil {
		return nil, errors.New("not connected")
	}
	var body xw
	c.xid++
	body.u32(c.xid)
	body.u32(0) // CALL
	body.u32(2) // RPC version
	body.u32(100003)
	body.u32(4)
	body.u32(1) // COMPOUND
	var cred xw
	cred.u32(uint32(time.Now().Unix()))
	cred.opaque([]byte("failover-client"))
	cred.u32(0) // uid
	cred.u32(0) // gid
	cred.u32(0) // no groups
	body.u32(1) // AUTH_SYS
	body.opaque(cred.Bytes())
	body.u32(0) // verifier AUTH_NONE
	body.u32(0)
	body.opaque(nil) // tag
	body.u32(1)      // minor version
	body.u32(n)
	ops(&body)

	_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	var rec xw
	rec.u32(0x80000000 | uint32(body.Len()))
	rec.Write(body.Bytes())
	if _, err := c.conn.Write(rec.Bytes()); err != nil {
		return nil, err
	}
	var reply []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c.rd, hdr[:]); err != nil {
			return nil, err
		}
		m := binary.BigEndian.Uint32(hdr[:])
		frag := make([]byte, m&0x7fffffff)
		if _, err := io.ReadFull(c.rd, frag); err != nil {
			return nil, err
		}
		reply = append(reply, frag...)
		if m&0x80000000 != 0 {
			break
		}
	}
	r := &xr{b: reply}
	if xid := r.u32(); xid != c.xid {
		return nil, fmt.Errorf("reply to xid %d, want %d", xid, c.xid)
	}
	if r.u32() != 1 || r.u32() != 0 { // REPLY, MSG_ACCEPTED
		return nil, errors.New("RPC call not accepted")
	}
	r.u32() // verifier flavour
	r.opaque()
	if st := r.u32(); st != 0 {
		return nil, fmt.Errorf("RPC accept status %d", st)
	}
	status := r.u32()
	r.opaque() // tag
	if cnt := r.u32(); cnt == 0 || r.err != nil {
		return nil, cmpErr(r.err, fmt.Errorf("compound status %d with no results", status))
	}
	op, st := r.u32(), r.u32()
	if status != nfs4OK {
		// Find the failing operation: walk results whose bodies are
		// skippable (SEQUENCE's is 36 bytes, PUTROOTFH and LOOKUP have
		// none) until the one with a status.
		for st == nfs4OK && r.err == nil {
			if op == opSequence {
				r.next(36)
			}
			op, st = r.u32(), r.u32()
		}
		return nil, &nfsStatusError{op: op, status: status}
	}
	return r, r.err
}

// runV41 is the NFSv4.1 client's loop in the client process: every
// interval it opens the file, reconnecting and reclaiming (as a kernel
// client does on a dead connection or session) when it must. It reports
// changes of state: "v41-open" when opens succeed again, "v41-fail" when
// they stop, "v41-session" for each session set up.
func runV41(c *v41, interval time.Duration, emit func(event), stop <-chan struct{}) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	defer c.drop()
	ok := false
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		var err error
		if !c.connected {
			if err = c.establish(); err == nil {
				emit(event{Kind: "v41-session"})
			}
		}
		if err == nil {
			err = c.open()
		}
		switch st := statusOf(err); {
		case err == nil:
			if !ok {
				emit(event{Kind: "v41-open"})
			}
			ok = true
			continue
		case st == nfs4ErrBadSession || st == nfs4ErrDeadSession || st == nfs4ErrStaleClient || st == nfs4ErrExpired:
			c.connected = false // a new server: a new session
		case st == 0:
			c.drop() // the connection
		}
		if ok {
			emit(event{Kind: "v41-fail", Msg: err.Error(), N: int(statusOf(err))})
		}
		ok = false
	}
}
