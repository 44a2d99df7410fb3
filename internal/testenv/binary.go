package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var dotsBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// DotsBinary builds bin/dots once per test process, for tests that run it
// as a subprocess (to kill it, or to test it as a user runs it). Main
// removes it when the tests end.
func DotsBinary(t testing.TB) string {
	t.Helper()
	dotsBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", fmt.Sprintf("dots-bin-%d-", os.Getpid()))
		if err != nil {
			dotsBinary.err = err
			return
		}
		dotsBinary.dir, dotsBinary.path = dir, filepath.Join(dir, "dots")
		out, err := exec.Command("go", "build", "-o", dotsBinary.path, "github.com/dots-csi/dots/cmd/dots").CombinedOutput()
		if err != nil {
			dotsBinary.err = fmt.Errorf("building dots: %v\n%s", err, out)
		}
	})
	if dotsBinary.err != nil {
		t.Fatal(dotsBinary.err)
	}
	return dotsBinary.path
}

func removeDotsBinary() {
	if dotsBinary.dir != "" {
		_ = os.RemoveAll(dotsBinary.dir)
	}
}
