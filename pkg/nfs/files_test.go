package nfs

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// servedIDs reads the exports file with its includes, as ganesha does,
// and returns the export IDs in it, in order.
func servedIDs(t *testing.T, cfg GaneshaConfig) []uint32 {
	t.Helper()
	data, err := ReadExports(cfg.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint32
	for _, m := range reID.FindAllStringSubmatch(data, -1) {
		n, _ := strconv.Atoi(m[1])
		ids = append(ids, uint32(n))
	}
	return ids
}

var rePath = regexp.MustCompile(`(?m)^\tPath = "([^"]*)";$`)

func TestWriteExports(t *testing.T) {
	c := validConfig()
	c.RunDir = t.TempDir()
	cfg, err := c.normalized()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.exportsDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	g := &Ganesha{cfg: cfg}
	e := func(id uint32, path string) Export { return Export{ID: id, Path: path, Pseudo: path} }
	set := map[uint32]Export{1: e(1, "/a"), 257: e(257, "/b"), 2: e(2, "/c")}
	if err := g.writeExports(set); err != nil {
		t.Fatal(err)
	}
	// Lists in order, each in ID order: 1 and 257 share list 1.
	if got := servedIDs(t, cfg); !slices.Equal(got, []uint32{1, 257, 2}) {
		t.Fatalf("exports after the first write: %v", got)
	}

	// A removal, a path change and an addition, as the DBus path writes them.
	changes := diffExports(set, map[uint32]Export{1: e(1, "/a2"), 2: e(2, "/c"), 513: e(513, "/d")})
	fi, err := os.Stat(cfg.exportFile(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.writeChanges(changes); err != nil {
		t.Fatal(err)
	}
	if got := servedIDs(t, cfg); !slices.Equal(got, []uint32{1, 513, 2}) {
		t.Errorf("exports after the changes: %v", got)
	}
	if _, err := os.Stat(cfg.exportFile(257)); !os.IsNotExist(err) {
		t.Errorf("file of the removed export: %v", err)
	}
	data, _ := os.ReadFile(cfg.exportFile(1))
	if got := rePath.FindStringSubmatch(string(data)); got == nil || got[1] != "/a2" {
		t.Errorf("export 1's file after its path changed:\n%s", data)
	}
	// Untouched exports' files are not rewritten.
	if fi2, err := os.Stat(cfg.exportFile(2)); err != nil || !os.SameFile(fi, fi2) {
		t.Errorf("export 2's file was replaced (%v)", err)
	}

	// The full write brings it all back to a set.
	if err := g.writeExports(set); err != nil {
		t.Fatal(err)
	}
	if got := servedIDs(t, cfg); !slices.Equal(got, []uint32{1, 257, 2}) {
		t.Errorf("exports after the second full write: %v", got)
	}
	if _, err := os.Stat(cfg.exportFile(513)); !os.IsNotExist(err) {
		t.Errorf("file of export 513, no longer in the set: %v", err)
	}
}
