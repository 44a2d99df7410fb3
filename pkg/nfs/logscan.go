package nfs

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Ganesha has no reply channel for SIGHUP (only its DBus export manager
// has one, used when the private bus runs), so reload results are read
// from its log. These are ganesha 4.x's messages at level EVENT and
// above, written by the signal thread in this order:
//
//	SIGHUP_HANDLER: Received SIGHUP.... initiating export list reload
//	(CRIT lines of exports that failed, e.g. "Could not create export for (PSEUDO) to (PATH)")
//	Reread exports complete            -- or one of reloadFailedMarks
//	Config File (FILE:LINE): ... errors in block EXPORT   -- per rejected block
//
// The new export table is live when "Reread exports complete" is logged.
const (
	markReloadStart = "SIGHUP_HANDLER: Received SIGHUP"
	markReloadDone  = "Reread exports complete"
	markStarted     = "NFS SERVER INITIALIZED"
)

// reloadFailedMarks end a reload that did not get as far as replacing the
// export table.
var reloadFailedMarks = []string{
	"Error while parsing new configuration file",
	"Error while parsing EXPORT entries",
	"Export defaults block error",
	"Export block error",
	"Pseudofs block error",
}

// problemLevels are the log levels worth reporting.
var problemLevels = []string{" :FATAL :", " :CRIT :", " :MAJ :"}

// problem returns the message of a FATAL, CRIT or MAJ log line.
func problem(line string) (string, bool) {
	for _, lvl := range problemLevels {
		if i := strings.Index(line, lvl); i >= 0 {
			return strings.TrimSpace(line[i+len(lvl):]), true
		}
	}
	return "", false
}

// reloadScan follows the log lines of one reload.
type reloadScan struct {
	started  bool
	done     bool
	failed   string   // set when the whole reload failed
	problems []string // FATAL/CRIT/MAJ messages since the reload started
}

func (s *reloadScan) feed(line string) {
	if !s.started {
		// Lines logged before our SIGHUP was handled (grace period,
		// clients...) are not about this reload.
		s.started = strings.Contains(line, markReloadStart)
		return
	}
	if msg, ok := problem(line); ok {
		s.problems = append(s.problems, msg)
	}
	if s.done {
		return
	}
	if strings.Contains(line, markReloadDone) {
		s.done = true
		return
	}
	for _, m := range reloadFailedMarks {
		if strings.Contains(line, m) {
			s.done = true
			s.failed = strings.TrimSpace(line)
			return
		}
	}
}

// startScan collects the problems logged while the server starts.
type startScan struct {
	done     bool
	problems []string
}

func (s *startScan) feed(line string) {
	if msg, ok := problem(line); ok && !s.done {
		s.problems = append(s.problems, msg)
	}
	if strings.Contains(line, markStarted) {
		s.done = true
	}
}

var (
	reBlockError   = regexp.MustCompile(`^Config File \((.+):(\d+)\): .*block EXPORT`)
	reCreateFailed = regexp.MustCompile(`^Could not create export for \(([^)]*)\)`)
	reUpdateFailed = regexp.MustCompile(`^Path for export update (\d+) `)
	reExportFile   = regexp.MustCompile(`^(\d+)\.conf$`)
)

// failedExports maps ganesha's problem messages to the exports they reject.
// An export counts as failed only on one of ganesha's verdicts: its EXPORT
// block (in its own file, exportsDir/ID.conf) reported with errors,
// "Could not create export for (PSEUDO)", or "Path for export update ID".
// Other messages naming the export's path or pseudo path are kept as the
// reason.
func failedExports(problems []string, exportsDir string, exports map[uint32]Export) map[uint32]string {
	byPseudo := make(map[string]uint32, len(exports))
	for id, e := range exports {
		byPseudo[e.Pseudo] = id
	}
	failed := map[uint32]bool{}
	for _, msg := range problems {
		if m := reBlockError.FindStringSubmatch(msg); m != nil && filepath.Dir(m[1]) == exportsDir {
			if n := reExportFile.FindStringSubmatch(filepath.Base(m[1])); n != nil {
				id, _ := strconv.ParseUint(n[1], 10, 32)
				if _, ok := exports[uint32(id)]; ok {
					failed[uint32(id)] = true
				}
			}
		}
		if m := reCreateFailed.FindStringSubmatch(msg); m != nil {
			if id, ok := byPseudo[m[1]]; ok {
				failed[id] = true
			}
		}
		if m := reUpdateFailed.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 32)
			if _, ok := exports[uint32(n)]; ok {
				failed[uint32(n)] = true
			}
		}
	}
	out := make(map[uint32]string, len(failed))
	for id := range failed {
		e := exports[id]
		var reasons []string
		for _, msg := range problems {
			if mentions(msg, e.Path) || mentions(msg, e.Pseudo) || mentions(msg, "update "+strconv.FormatUint(uint64(id), 10)) {
				reasons = append(reasons, msg)
			}
		}
		if len(reasons) == 0 {
			reasons = []string{"rejected by ganesha (see its log)"}
		}
		if len(reasons) > 4 {
			reasons = reasons[:4]
		}
		out[id] = strings.Join(reasons, "; ")
	}
	return out
}

// mentions reports whether msg contains word not followed by another path
// character, so /a does not match /ab or /a/b.
func mentions(msg, word string) bool {
	for off := 0; ; {
		i := strings.Index(msg[off:], word)
		if i < 0 {
			return false
		}
		end := off + i + len(word)
		if end == len(msg) || !isPathChar(msg[end]) {
			return true
		}
		off = off + i + 1
	}
}

func isPathChar(c byte) bool {
	return c == '/' || c == '.' || c == '_' || c == '-' || c == ':' || c == '@' || c == '+' || c == ',' || c == '=' ||
		('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}
