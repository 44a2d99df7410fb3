//go:build integration

package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func pools(t *testing.T) []string {
	return strings.Fields(Zpool(t, "list", "-H", "-o", "name"))
}

// rawPool creates a pool by hand (not through NewPool), as a crashed run
// would have left it; the test destroys it if CleanStalePools does not.
func rawPool(t *testing.T, name string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "p.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	Zpool(t, "create", "-m", filepath.Join(filepath.Dir(img), "mnt"), name, img)
	r := Runner(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := destroyTestPool(ctx, r, name, ""); err != nil {
			t.Errorf("pool %s left behind: %v", name, err)
		}
	})
	return img
}

func TestCleanStalePools(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("dotsz-%d-stale", dead.Process.Pid)
	alive := fmt.Sprintf("dotsz-%d-alive", os.Getpid())
	foreign := fmt.Sprintf("zz-%d-notdots", dead.Process.Pid)
	staleImg := rawPool(t, stale)
	rawPool(t, alive)
	rawPool(t, foreign)

	if err := CleanStalePools(ctx); err != nil {
		t.Fatal(err)
	}
	have := pools(t)
	if slices.Contains(have, stale) {
		t.Errorf("the dead run's pool survived: %v", have)
	}
	if !slices.Contains(have, alive) || !slices.Contains(have, foreign) {
		t.Errorf("live or foreign pool destroyed: %v", have)
	}
	if _, err := os.Stat(staleImg); !os.IsNotExist(err) {
		t.Errorf("backing file of the dead run's pool kept: %v", err)
	}
}

func TestNewPool(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		p := NewPool(t, "dotsz", 0)
		name = p.Name()
		if pid, ok := poolOwner(name); !ok || pid != os.Getpid() || !slices.Contains(pools(t), name) {
			t.Fatalf("pool %q not imported under this test's pid", name)
		}
		if !strings.HasPrefix(p.StateDir(), os.TempDir()) {
			t.Errorf("state dir %q outside the temp dir", p.StateDir())
		}
	})
	if slices.Contains(pools(t), name) {
		t.Errorf("pool %s survived its test", name)
	}
}
