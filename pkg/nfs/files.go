package nfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The exports on disk: exports.conf includes exportLists list files, which
// include one file per export (exports.d/ID.conf, its EXPORT block alone).
// g.files is what the export files say; only the supervisor (and Start
// before it) writes them.

// writeExports makes the files say set, writing only the exports that
// changed and the lists holding them. Each file is replaced atomically,
// so ganesha never reads half of one.
func (g *Ganesha) writeExports(set map[uint32]Export) error {
	first := g.files == nil
	if first {
		g.files = map[uint32]Export{}
	}
	var ids []uint32
	for id, e := range set {
		if old, ok := g.files[id]; !ok || !old.Equal(e) {
			ids = append(ids, id)
		}
	}
	for id := range g.files {
		if _, ok := set[id]; !ok {
			ids = append(ids, id)
		}
	}
	if err := g.writeIDs(set, ids, first); err != nil {
		return err
	}
	return writeFileAtomic(g.cfg.exportsPath(), renderExportIndex(g.cfg))
}

// writeChanges writes what changes make of the exports they name: O(changes).
func (g *Ganesha) writeChanges(changes []exportChange) error {
	if g.files == nil {
		return errors.New("exports files not written yet")
	}
	want := make(map[uint32]Export, len(changes))
	ids := make([]uint32, 0, len(changes))
	for _, c := range changes {
		ids = append(ids, c.e.ID)
		if c.op == opRemove {
			delete(want, c.e.ID) // a remove before an add of the same ID keeps the add
			continue
		}
		want[c.e.ID] = c.e
	}
	return g.writeIDs(want, ids, false)
}

// writeIDs makes the files of exports ids say want (absent: no export),
// then rewrites their lists (every list when all is set), and only then
// deletes the files of removed exports, once no list includes them.
func (g *Ganesha) writeIDs(want map[uint32]Export, ids []uint32, all bool) error {
	lists := map[int]bool{}
	var gone []uint32
	for _, id := range ids {
		lists[int(id%exportLists)] = true
		e, ok := want[id]
		if !ok {
			if _, had := g.files[id]; had {
				gone = append(gone, id)
				delete(g.files, id)
			}
			continue
		}
		if old, had := g.files[id]; had && old.Equal(e) {
			continue
		}
		delete(g.files, id) // unknown until written
		if err := writeFileAtomic(g.cfg.exportFile(id), renderExport(g.cfg, e)); err != nil {
			return err
		}
		g.files[id] = e
	}
	for n := range exportLists {
		if all || lists[n] {
			if err := writeFileAtomic(g.cfg.listFile(n), renderExportList(g.cfg, n, g.files)); err != nil {
				return err
			}
		}
	}
	for _, id := range gone {
		if err := os.Remove(g.cfg.exportFile(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// ReadExports returns the exports file in a ganesha run directory
// (GaneshaConfig.RunDir) with the files it includes in their place, as
// ganesha reads it: every EXPORT block it is told to serve. For looking
// at, as tests and people do; the server never reads it back.
func ReadExports(runDir string) (string, error) {
	return readIncluding(filepath.Join(runDir, "exports.conf"), 0)
}

// maxIncludeDepth bounds readIncluding: ours nest two deep.
const maxIncludeDepth = 8

func readIncluding(path string, depth int) (string, error) {
	if depth > maxIncludeDepth {
		return "", fmt.Errorf("%s: includes nested too deep", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for _, l := range strings.SplitAfter(string(b), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), "%include ")
		if !ok {
			out.WriteString(l)
			continue
		}
		inc, err := readIncluding(strings.Trim(rest, `"`), depth+1)
		if err != nil {
			return "", err
		}
		out.WriteString(inc)
	}
	return out.String(), nil
}
