package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/pkg/zfs/fusecompat"
)

func TestMain(m *testing.M) { Main(m) }

func TestVdevFiles(t *testing.T) {
	status := "  pool: dotsz-x\n state: ONLINE\n scrub: none requested\nconfig:\n\n" +
		"\tNAME             STATE     READ WRITE CKSUM\n" +
		"\tdotsz-x          ONLINE       0     0     0\n" +
		"\t  /tmp/a/p.img   ONLINE       0     0     0\n" +
		"\t  mirror-0       ONLINE       0     0     0\n" +
		"\t    /tmp/b.img   ONLINE       0     0     0\n" +
		"\nerrors: No known data errors\n"
	if got := vdevFiles(status); !slices.Equal(got, []string{"/tmp/a/p.img", "/tmp/b.img"}) {
		t.Errorf("vdevFiles = %v", got)
	}
}

func pools(t *testing.T) []string {
	out, err := run(context.Background(), fusecompat.ToolZpool, "list", "-H", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

// rawPool creates a pool by hand (not through NewPool), as a crashed run
// would have left it.
func rawPool(t *testing.T, name string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "p.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := run(context.Background(), fusecompat.ToolZpool, "create", "-m", filepath.Join(filepath.Dir(img), "mnt"), name, img); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// zfs-fuse answers "busy" for a moment after mounts change: retry.
		var err error
		for try := 0; try < 50 && slices.Contains(pools(t), name); try++ {
			if _, err = run(context.Background(), fusecompat.ToolZpool, "destroy", "-f", name); err == nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("pool %s left behind: %v", name, err)
		}
	})
	return img
}

func TestCleanStalePools(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	suffix := strconv.Itoa(os.Getpid())
	fileGone, pidGone, alive, foreign := "dotsz-gone-"+suffix, "dotsz-dead-"+suffix, "dotsz-live-"+suffix, "zz-notdots-"+suffix

	img := rawPool(t, fileGone)
	if err := os.Remove(img); err != nil {
		t.Fatal(err)
	}
	deadImg := rawPool(t, pidGone)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := run(ctx, fusecompat.ToolZFS, "set", propTestPID+"="+strconv.Itoa(dead.Process.Pid), pidGone); err != nil {
		t.Fatal(err)
	}
	rawPool(t, alive)
	if _, err := run(ctx, fusecompat.ToolZFS, "set", propTestPID+"="+strconv.Itoa(os.Getpid()), alive); err != nil {
		t.Fatal(err)
	}
	foreignImg := rawPool(t, foreign)
	_ = os.Remove(foreignImg) // not a dots pool: never touched

	if err := CleanStalePools(ctx); err != nil {
		t.Fatal(err)
	}
	have := pools(t)
	if slices.Contains(have, fileGone) || slices.Contains(have, pidGone) {
		t.Errorf("stale pools survived: %v", have)
	}
	if !slices.Contains(have, alive) || !slices.Contains(have, foreign) {
		t.Errorf("live or foreign pool destroyed: %v", have)
	}
	if _, err := os.Stat(deadImg); !os.IsNotExist(err) {
		t.Errorf("backing file of the dead run's pool kept: %v", err)
	}
}

func TestNewPool(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		p := NewPool(t, "dotsz", 0)
		name = p.Name()
		if !strings.HasPrefix(name, "dotsz-") || !slices.Contains(pools(t), name) {
			t.Fatalf("pool %q not imported", name)
		}
		out, err := run(context.Background(), fusecompat.ToolZFS, "get", "-H", "-o", "value", propTestPID, name)
		if err != nil || strings.TrimSpace(out) != strconv.Itoa(os.Getpid()) {
			t.Errorf("pid property = %q, %v", out, err)
		}
		if !strings.HasPrefix(p.StateDir(), os.TempDir()) {
			t.Errorf("state dir %q outside the temp dir", p.StateDir())
		}
	})
	if slices.Contains(pools(t), name) {
		t.Errorf("pool %s survived its test", name)
	}
}
