package placements

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/dots-csi/dots/pkg/api"
)

// Dir keeps each record in a file DIR/KIND/ID holding the server's name,
// and each forgotten server as a file DIR/forgotten/SERVER. Files are
// written to a temporary name, synced, and linked into place (a link fails
// if the name exists, so two writers never both win), then the directory
// is synced.
type Dir struct {
	root string
}

const forgottenDir = "forgotten"

// NewDir opens (creating) a store in root.
func NewDir(root string) (*Dir, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("placements dir %q must be absolute", root)
	}
	for _, d := range []string{string(Volume), string(Snapshot), forgottenDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, err
		}
	}
	return &Dir{root: root}, nil
}

func (d *Dir) path(kind Kind, id string) (string, error) {
	if _, err := ParseKind(string(kind)); err != nil {
		return "", err
	}
	if err := api.ValidateID(id); err != nil {
		return "", err
	}
	return filepath.Join(d.root, string(kind), id), nil
}

// Get implements Store.
func (d *Dir) Get(ctx context.Context, kind Kind, id string) (string, bool, error) {
	r, ok, err := d.Lookup(ctx, kind, id)
	return r.Server, ok, err
}

// Lookup implements Store.
func (d *Dir) Lookup(_ context.Context, kind Kind, id string) (Record, bool, error) {
	r := Record{Kind: kind, ID: id}
	p, err := d.path(kind, id)
	if err != nil {
		return r, false, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	return r, true, decodeFile(&r, string(b))
}

// Update implements Store. Writers of one store serialise on an flock of
// its lock file (the local stack runs one controller, but a restart may
// overlap its predecessor); the new content replaces the old by rename, so
// a reader sees one or the other.
func (d *Dir) Update(ctx context.Context, old, r Record) error {
	if err := checkUpdate(old, r); err != nil {
		return err
	}
	p, err := d.path(r.Kind, r.ID)
	if err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(d.root, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	cur, ok, err := d.Lookup(ctx, r.Kind, r.ID)
	if err != nil {
		return err
	}
	if !ok || !cur.Equal(old) {
		return fmt.Errorf("%s %q: %w", r.Kind, r.ID, ErrChanged)
	}
	return writeReplace(p, encodeFile(r))
}

// Put implements Store.
func (d *Dir) Put(ctx context.Context, r Record) error {
	p, err := d.path(r.Kind, r.ID)
	if err != nil {
		return err
	}
	if err := api.ValidateServerName(r.Server); err != nil {
		return err
	}
	err = writeExclusive(p, encodeFile(r))
	if errors.Is(err, os.ErrExist) {
		s, ok, gerr := d.Get(ctx, r.Kind, r.ID)
		switch {
		case gerr != nil:
			return gerr
		case ok && s == r.Server:
			return nil
		case ok:
			return fmt.Errorf("%s %q: %w %q", r.Kind, r.ID, ErrConflict, s)
		}
		return d.Put(ctx, r) // deleted meanwhile
	}
	return err
}

// Delete implements Store.
func (d *Dir) Delete(ctx context.Context, r Record) error {
	p, err := d.path(r.Kind, r.ID)
	if err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(d.root, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	s, ok, err := d.Get(ctx, r.Kind, r.ID)
	if err != nil || !ok || s != r.Server {
		return err
	}
	// Not synced: a record that comes back after a crash only pins a
	// name no one uses to a server (a retry of its delete drops it), and
	// a sync here would put a journal commit in every delete's path.
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// List implements Store.
func (d *Dir) List(ctx context.Context) ([]Record, error) {
	var out []Record
	for _, k := range []Kind{Snapshot, Volume} {
		entries, err := os.ReadDir(filepath.Join(d.root, string(k)))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue // a write in progress
			}
			r, ok, err := d.Lookup(ctx, k, e.Name())
			if err != nil || !ok {
				continue
			}
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Kind < out[j].Kind || out[i].Kind == out[j].Kind && out[i].ID < out[j].ID
	})
	return out, nil
}

// Forget implements Store.
func (d *Dir) Forget(_ context.Context, server string) error {
	if err := api.ValidateServerName(server); err != nil {
		return err
	}
	err := writeExclusive(filepath.Join(d.root, forgottenDir, server), server+"\n")
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	return err
}

// Forgotten implements Store.
func (d *Dir) Forgotten(_ context.Context, server string) (bool, error) {
	if err := api.ValidateServerName(server); err != nil {
		return false, err
	}
	_, err := os.Stat(filepath.Join(d.root, forgottenDir, server))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// writeExclusive writes text to path durably, failing with os.ErrExist if
// path exists.
func writeExclusive(path, text string) error { return writeDurably(path, text, os.Link) }

// writeReplace writes text to path durably, replacing what it held.
func writeReplace(path, text string) error { return writeDurably(path, text, os.Rename) }

// writeDurably writes text to a synced temporary file beside path, puts it
// in place with place (a link refuses an existing path, a rename replaces
// it) and syncs the directory, so a crash leaves the old text or the new,
// never a part.
func writeDurably(path, text string, place func(tmp, path string) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(text)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := place(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// lockFile takes an exclusive flock of path (created), released by the
// function it returns.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing releases the lock
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
