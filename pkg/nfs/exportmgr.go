package nfs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// Ganesha's DBus export manager (src/support/export_mgr.c). AddExport and
// UpdateExport parse one file and load the EXPORT blocks an expression
// selects; RemoveExport takes the Export_Id. Each call changes one export,
// so its cost does not grow with the number of exports, unlike a SIGHUP,
// which re-reads them all. A call returns once the change is live: an
// added export is in the pseudo filesystem when the reply comes.
const (
	ganeshaBusName    = "org.ganesha.nfsd"
	exportMgrPath     = "/org/ganesha/nfsd/ExportMgr"
	exportMgrIface    = "org.ganesha.nfsd.exportmgr"
	methodAddExport   = exportMgrIface + ".AddExport"
	methodUpdate      = exportMgrIface + ".UpdateExport"
	methodRemove      = exportMgrIface + ".RemoveExport"
	errAlreadyActive  = "already active"      // AddExport of an ID ganesha serves
	errExportNotFound = "Export id not found" // RemoveExport of an ID it does not
)

// Methods and outcomes of export changes, the labels of
// Status.ExportChanges.
const (
	MethodDBus   = "dbus"
	MethodSIGHUP = "sighup"

	OutcomeOK          = "ok"          // applied
	OutcomeError       = "error"       // the call or reload failed
	OutcomeUnavailable = "unavailable" // no bus to call: SIGHUP instead
	OutcomeTooMany     = "batch"       // too many at once: one SIGHUP is cheaper
)

// ChangeKey labels a count of export changes.
type ChangeKey struct{ Method, Outcome string }

// maxDBusBatch: past this many changes at once (a full resync after the
// exports file was lost, say), one reload costs less than a call each.
const maxDBusBatch = 256

type changeOp int

const (
	opRemove changeOp = iota
	opUpdate
	opAdd
)

// exportChange is one export manager call.
type exportChange struct {
	op changeOp
	e  Export // for opRemove, only e.ID counts
}

// diffExports is what turns the live set into want, in calls: removals
// first (so a pseudo path another export gives up is free when added),
// then updates, then additions, each in ID order. Ganesha cannot change
// an export's Path or Pseudo in place, so those are a removal and an add.
func diffExports(live, want map[uint32]Export) []exportChange {
	ids := make(map[uint32]struct{}, len(want))
	for id := range live {
		ids[id] = struct{}{}
	}
	for id := range want {
		ids[id] = struct{}{}
	}
	return diffExportsOf(live, want, ids)
}

// diffExportsOf is diffExports for the exports ids only.
func diffExportsOf(live, want map[uint32]Export, ids map[uint32]struct{}) []exportChange {
	var out []exportChange
	for id := range ids {
		old, wasLive := live[id]
		e, wanted := want[id]
		moved := wasLive && wanted && (e.Path != old.Path || e.Pseudo != old.Pseudo)
		if wasLive && (!wanted || moved) {
			out = append(out, exportChange{op: opRemove, e: old})
		}
		switch {
		case wanted && (!wasLive || moved):
			out = append(out, exportChange{op: opAdd, e: e})
		case wanted && !old.Equal(e):
			out = append(out, exportChange{op: opUpdate, e: e})
		}
	}
	slices.SortFunc(out, func(a, b exportChange) int {
		if a.op != b.op {
			return int(a.op) - int(b.op)
		}
		return int(a.e.ID) - int(b.e.ID)
	})
	return out
}

// exportMgr calls ganesha's export manager over the private bus. Only the
// supervisor goroutine uses it, so calls never overlap (ganesha refuses a
// second export admin operation while one runs).
type exportMgr struct {
	cfg  GaneshaConfig
	addr string // the bus address; "" when there is no bus
	conn *dbus.Conn
}

// reset forgets the connection, for a new bus or a new ganesha.
func (m *exportMgr) reset(addr string) {
	if m.conn != nil {
		_ = m.conn.Close()
	}
	m.addr, m.conn = addr, nil
}

func (m *exportMgr) available() bool { return m.addr != "" }

func (m *exportMgr) connect() (*dbus.Conn, error) {
	if m.conn != nil && m.conn.Connected() {
		return m.conn, nil
	}
	m.reset(m.addr)
	if m.addr == "" {
		return nil, errors.New("no DBus")
	}
	// Connect has no deadline of its own: a bus that does not answer
	// (stopped, overloaded) would hold the supervisor. Cancelling the
	// connection's context closes it, which ends the handshake.
	connCtx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(m.cfg.DBusTimeout, cancel)
	conn, err := dbus.Connect(m.addr, dbus.WithContext(connCtx))
	if !timer.Stop() && err == nil {
		_ = conn.Close()
		err = fmt.Errorf("no answer within %v", m.cfg.DBusTimeout)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("connecting to the bus %s: %w", m.addr, err)
	}
	m.conn = conn
	return conn, nil
}

// apply makes the calls in order. It returns how many were applied before
// the first failure, and that failure. The exports' files must be written:
// AddExport and UpdateExport read the export's own file.
func (m *exportMgr) apply(ctx context.Context, changes []exportChange) (int, error) {
	conn, err := m.connect()
	if err != nil {
		return 0, err
	}
	obj := conn.Object(ganeshaBusName, exportMgrPath)
	call := func(method string, args ...any) error {
		ctx, cancel := context.WithTimeout(ctx, m.cfg.DBusTimeout)
		defer cancel()
		return obj.CallWithContext(ctx, method, 0, args...).Err
	}
	for i, c := range changes {
		id := c.e.ID
		file := m.cfg.exportFile(id)
		expr := fmt.Sprintf("EXPORT(Export_Id=%d)", id)
		var err error
		switch c.op {
		case opRemove:
			err = call(methodRemove, uint16(id))
			if callSays(err, errExportNotFound) {
				err = nil // already gone: what we wanted
			}
		case opAdd:
			err = call(methodAddExport, file, expr)
			if callSays(err, errAlreadyActive) {
				// Ganesha serves this ID already (one we believed gone):
				// bring it up to date instead.
				err = call(methodUpdate, file, expr)
			}
		case opUpdate:
			err = call(methodUpdate, file, expr)
		}
		if err != nil {
			if !conn.Connected() {
				m.reset(m.addr)
			}
			return i, fmt.Errorf("export %d: %w", id, err)
		}
	}
	return len(changes), nil
}

// callSays reports whether err is a DBus error reply whose message
// contains text.
func callSays(err error, text string) bool {
	var de dbus.Error
	if !errors.As(err, &de) {
		return false
	}
	for _, b := range de.Body {
		if s, ok := b.(string); ok && strings.Contains(s, text) {
			return true
		}
	}
	return false
}
