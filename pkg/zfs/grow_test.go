package zfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dots-csi/dots/pkg/zfs/command"
)

// zpoolRan is what a scripted runner ran of zpool (the Grower's own
// commands; its capacity reads for the log are zfs get).
func (s *scripted) zpoolRan() []string {
	var out []string
	for _, c := range s.ran {
		if strings.HasPrefix(c, "zpool ") {
			out = append(out, c)
		}
	}
	s.ran = nil
	return out
}

func TestGrowerTellsThePoolWhatGrew(t *testing.T) {
	ok := scriptedAnswer{}
	r := &scripted{answers: map[string]scriptedAnswer{
		"zpool set autoexpand=on tank": ok,
		"zpool online -e tank /dev/a":  ok,
		"zpool online -e tank /data/b": ok,
	}}
	for _, flavor := range []CLI{CLIOpenZFS, CLIZFSFuse} {
		t.Run(string(flavor), func(t *testing.T) {
			p := &Pool{name: "tank", runner: r, flavor: flavors[flavor]}
			sizes := map[string]int64{"/dev/a": 100, "/data/b": 200}
			g := NewGrower(p, []string{"/dev/a", "/data/b"})
			g.sizeOf = func(v string) (int64, error) { return sizes[v], nil }
			ctx := context.Background()

			// The first check: autoexpand, and every vdev (it may have
			// grown while no server ran).
			told, err := g.Check(ctx)
			if err != nil || !reflect.DeepEqual(told, []string{"/dev/a", "/data/b"}) {
				t.Fatalf("first Check = %v, %v", told, err)
			}
			if got, want := r.zpoolRan(), []string{"zpool set autoexpand=on tank", "zpool online -e tank /dev/a", "zpool online -e tank /data/b"}; !reflect.DeepEqual(got, want) {
				t.Errorf("first Check ran %q, want %q", got, want)
			}
			// Nothing grew: nothing runs.
			if told, err := g.Check(ctx); err != nil || len(told) != 0 || len(r.zpoolRan()) != 0 {
				t.Errorf("Check with nothing grown = %v, %v", told, err)
			}
			// One grew, one shrank (ZFS cannot shrink: nothing to do).
			sizes["/data/b"], sizes["/dev/a"] = 300, 50
			told, err = g.Check(ctx)
			if err != nil || !reflect.DeepEqual(told, []string{"/data/b"}) {
				t.Errorf("Check after /data/b grew = %v, %v", told, err)
			}
			if got, want := r.zpoolRan(), []string{"zpool online -e tank /data/b"}; !reflect.DeepEqual(got, want) {
				t.Errorf("ran %q, want %q", got, want)
			}
			if told, _ := g.Check(ctx); len(told) != 0 {
				t.Errorf("told again about %v", told)
			}
		})
	}
}

// A vdev whose size cannot be read or whose command fails is reported and
// tried again at the next check; the others are told all the same.
func TestGrowerRetriesFailures(t *testing.T) {
	r := &scripted{answers: map[string]scriptedAnswer{
		"zpool set autoexpand=on tank": {},
		"zpool online -e tank /dev/a":  {},
		"zpool online -e tank /dev/b":  {err: &command.Error{Cmd: "zpool online", Stderr: "cannot expand", Err: errors.New("exit status 1")}},
	}}
	p := &Pool{name: "tank", runner: r, flavor: flavors[CLIOpenZFS]}
	g := NewGrower(p, []string{"/dev/a", "/dev/b", "/dev/c"})
	g.sizeOf = func(v string) (int64, error) {
		if v == "/dev/c" {
			return 0, os.ErrPermission
		}
		return 100, nil
	}
	told, err := g.Check(context.Background())
	if !reflect.DeepEqual(told, []string{"/dev/a"}) || err == nil || !strings.Contains(err.Error(), "/dev/b") || !strings.Contains(err.Error(), "/dev/c") {
		t.Fatalf("Check = %v, %v; want /dev/a told, errors naming /dev/b and /dev/c", told, err)
	}
	r.zpoolRan()
	r.answers["zpool online -e tank /dev/b"] = scriptedAnswer{}
	told, _ = g.Check(context.Background())
	if !reflect.DeepEqual(told, []string{"/dev/b"}) {
		t.Errorf("retry told %v, want /dev/b", told)
	}
	if got := r.zpoolRan(); !reflect.DeepEqual(got, []string{"zpool online -e tank /dev/b"}) {
		t.Errorf("retry ran %q: autoexpand is set once", got)
	}

	// autoexpand refused: nothing else runs, and it is asked again.
	r2 := &scripted{answers: map[string]scriptedAnswer{}}
	g2 := NewGrower(&Pool{name: "tank", runner: r2}, []string{"/dev/a"})
	g2.sizeOf = func(string) (int64, error) { return 1, nil }
	for range 2 {
		if _, err := g2.Check(context.Background()); err == nil {
			t.Fatal("Check without autoexpand succeeded")
		}
	}
	if got := r2.zpoolRan(); !reflect.DeepEqual(got, []string{"zpool set autoexpand=on tank", "zpool set autoexpand=on tank"}) {
		t.Errorf("ran %q", got)
	}
}

func TestGrowFiles(t *testing.T) {
	dir := t.TempDir()
	small, large := filepath.Join(dir, "small.img"), filepath.Join(dir, "large.img")
	for f, size := range map[string]int64{small: 1 << 20, large: 8 << 20} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f, size); err != nil {
			t.Fatal(err)
		}
	}
	grown, err := GrowFiles([]string{small, large, filepath.Join(dir, "missing.img"), "/dev/null"}, 4<<20)
	if err != nil || !reflect.DeepEqual(grown, []string{small}) {
		t.Fatalf("GrowFiles = %v, %v; want only %s grown", grown, err, small)
	}
	for f, want := range map[string]int64{small: 4 << 20, large: 8 << 20} {
		if st, err := os.Stat(f); err != nil || st.Size() != want {
			t.Errorf("%s: %v, want %d bytes (never shrunk)", f, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing vdev was created: %v", err)
	}
	// Larger than its file system: refused, the file left as it was.
	if _, err := GrowFiles([]string{small}, 1<<60); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "file system") {
		t.Errorf("GrowFiles past the file system: %v, want ErrInvalid", err)
	}
	if st, _ := os.Stat(small); st.Size() != 4<<20 {
		t.Errorf("refused growth changed the file to %d bytes", st.Size())
	}
	if grown, err := GrowFiles([]string{small}, 0); err != nil || grown != nil {
		t.Errorf("GrowFiles with no size = %v, %v", grown, err)
	}
}
