package zfs

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// recorder is a Runner that records each command line and fails those
// matching fail (with a stderr zfs would print).
type recorder struct {
	mu   sync.Mutex
	cmds []string
	fail *regexp.Regexp
}

func (r *recorder) Run(_ context.Context, c command.Cmd) ([]byte, error) {
	line := strings.Join(c.Args, " ")
	r.mu.Lock()
	r.cmds = append(r.cmds, line)
	r.mu.Unlock()
	if r.fail != nil && r.fail.MatchString(line) {
		return nil, &command.Error{Cmd: "zfs " + line, Stderr: "cannot rename: permission denied", Err: errors.New("exit status 1")}
	}
	return nil, nil
}

// masked replaces the random part of the transient snapshot's name.
func (r *recorder) masked() []string {
	re := regexp.MustCompile(`@_g-[0-9a-f]+`)
	out := make([]string, len(r.cmds))
	for i, c := range r.cmds {
		out[i] = re.ReplaceAllString(c, "@_g-X")
	}
	return out
}

func groupTestPool(cli CLI, r *recorder) *Pool {
	return &Pool{name: "p", runner: r, flavor: flavors[cli], index: newIndex()}
}

var (
	groupDatasets = []string{"p/dots/volumes/a", "p/dots/volumes/b"}
	groupNames    = []string{"g-a", "g-b"}
)

func TestSnapshotAtomicallyCommands(t *testing.T) {
	for _, tc := range []struct {
		cli  CLI
		want []string
	}{
		// OpenZFS: one command names every member.
		{CLIOpenZFS, []string{"snapshot -o dots:group=g p/dots/volumes/a@g-a p/dots/volumes/b@g-b"}},
		// zfs-fuse: one recursive snapshot, the members renamed, the rest
		// destroyed in one recursive destroy.
		{CLIZFSFuse, []string{
			"snapshot -r -o dots:group=g p/dots/volumes@_g-X",
			"rename p/dots/volumes/a@_g-X p/dots/volumes/a@g-a",
			"rename p/dots/volumes/b@_g-X p/dots/volumes/b@g-b",
			"destroy -r p/dots/volumes@_g-X",
		}},
	} {
		r := &recorder{}
		if err := groupTestPool(tc.cli, r).snapshotAtomically(context.Background(), "g", groupDatasets, groupNames); err != nil {
			t.Fatalf("%s: %v", tc.cli, err)
		}
		if got := r.masked(); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s ran\n%s\nwant\n%s", tc.cli, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
}

// A member that cannot be renamed on zfs-fuse fails the group and leaves
// nothing: the members renamed before are destroyed, the transient
// snapshots too.
func TestSnapshotAtomicallyUndo(t *testing.T) {
	r := &recorder{fail: regexp.MustCompile(`^rename p/dots/volumes/b@`)}
	err := groupTestPool(CLIZFSFuse, r).snapshotAtomically(context.Background(), "g", groupDatasets, groupNames)
	if err == nil {
		t.Fatal("the group succeeded with a member that could not be renamed")
	}
	want := []string{
		"snapshot -r -o dots:group=g p/dots/volumes@_g-X",
		"rename p/dots/volumes/a@_g-X p/dots/volumes/a@g-a",
		"rename p/dots/volumes/b@_g-X p/dots/volumes/b@g-b",
		"destroy p/dots/volumes/a@g-a",
		"destroy -r p/dots/volumes@_g-X",
	}
	if got := r.masked(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The index finds a group's members by their dots:group, in source volume
// order, and nothing of other groups or of none.
func TestIndexGroupSnapshots(t *testing.T) {
	x := newIndex()
	for _, s := range []*Snapshot{
		{Name: "g1-b", SourceVolume: "b", Group: "g1"},
		{Name: "g1-a", SourceVolume: "a", Group: "g1"},
		{Name: "g2-a", SourceVolume: "a", Group: "g2"},
		{Name: "plain", SourceVolume: "a"},
	} {
		x.putSnapshot(s)
	}
	got := x.groupSnapshots("g1")
	if len(got) != 2 || got[0].Name != "g1-a" || got[1].Name != "g1-b" {
		t.Fatalf("group g1: %+v, want g1-a then g1-b", got)
	}
	if got := x.groupSnapshots("g3"); len(got) != 0 {
		t.Fatalf("group g3: %+v, want none", got)
	}
	x.dropSnapshot("g1-a")
	if got := x.groupSnapshots("g1"); len(got) != 1 || got[0].Name != "g1-b" {
		t.Fatalf("group g1 after a member's delete: %+v", got)
	}
}
