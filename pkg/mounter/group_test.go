package mounter

import (
	"io/fs"
	"os"
	"syscall"
	"testing"
)

// TestShareGroup on a real directory, with the caller's own group (no
// root needed): the mode gains group write and setgid; a second call
// changes nothing.
func TestShareGroup(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	gid := uint32(os.Getgid())
	if err := shareGroup(dir, gid); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (fs.ModePerm | fs.ModeSetgid); got != fs.ModeSetgid|0o770 {
		t.Fatalf("mode %v, want setgid 770", got)
	}
	if g := fi.Sys().(*syscall.Stat_t).Gid; g != gid {
		t.Fatalf("gid %d, want %d", g, gid)
	}
	before := fi.ModTime()
	if err := shareGroup(dir, gid); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); !fi.ModTime().Equal(before) || fi.Mode()&fs.ModePerm != 0o770 {
		t.Fatalf("second call changed the directory: %v", fi.Mode())
	}
	if err := shareGroup(dir+"/missing", gid); err == nil {
		t.Fatal("a missing directory was shared")
	}
}
