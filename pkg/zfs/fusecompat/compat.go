// Package fusecompat lets go-zfs (written for OpenZFS) drive zfs-fuse, whose
// CLI is older: `zfs list -p` is refused, the properties written and
// logicalused do not exist, and `zpool get` takes no -H/-p.
//
// It works without forking go-zfs: Enable puts symlinks named zfs and zpool
// pointing at the running executable first in PATH, and that executable,
// started under one of those names, calls Main, which translates the few
// calls go-zfs makes that zfs-fuse refuses and passes every other call
// through unchanged to the real binary.
package fusecompat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Environment variables holding the real binaries' paths, set by Enable
// and inherited by the shim processes.
const (
	EnvRealZFS   = "DOTS_REAL_ZFS"
	EnvRealZpool = "DOTS_REAL_ZPOOL"
)

// Tools the shim stands in for.
const (
	ToolZFS   = "zfs"
	ToolZpool = "zpool"
)

func envFor(tool string) string {
	if tool == ToolZpool {
		return EnvRealZpool
	}
	return EnvRealZFS
}

// RealBinary returns the path of the real zfs or zpool when the shim is
// enabled, else the bare name (looked up in PATH when run).
func RealBinary(tool string) string {
	if p := os.Getenv(envFor(tool)); p != "" {
		return p
	}
	return tool
}

// IsShim reports whether argv0 names one of the tools the shim stands in
// for: the executable was started through one of Enable's symlinks.
func IsShim(argv0 string) bool {
	b := filepath.Base(argv0)
	return b == ToolZFS || b == ToolZpool
}

// Enable makes go-zfs run this executable as its zfs and zpool: it writes
// dir/zfs and dir/zpool as symlinks to os.Executable(), records the real
// binaries in EnvRealZFS/EnvRealZpool and puts dir first in PATH. This
// changes the process environment (go-zfs resolves "zfs" through PATH, so
// there is no narrower place), and it is idempotent. The executable must
// call Main when started as zfs or zpool (see IsShim).
func Enable(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("fusecompat: own executable: %w", err)
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("fusecompat: shim dir %q must be absolute", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("fusecompat: %w", err)
	}
	for _, tool := range []string{ToolZFS, ToolZpool} {
		realPath := os.Getenv(envFor(tool))
		if realPath == "" {
			if realPath, err = exec.LookPath(tool); err != nil {
				return fmt.Errorf("fusecompat: real %s: %w", tool, err)
			}
			if realPath, err = filepath.Abs(realPath); err != nil {
				return fmt.Errorf("fusecompat: real %s: %w", tool, err)
			}
		}
		if sameFile(realPath, self) {
			return fmt.Errorf("fusecompat: %s in PATH is this executable; set %s to the real one", tool, envFor(tool))
		}
		link := filepath.Join(dir, tool)
		if cur, err := os.Readlink(link); err != nil || cur != self {
			_ = os.Remove(link)
			if err := os.Symlink(self, link); err != nil {
				return fmt.Errorf("fusecompat: %w", err)
			}
		}
		if err := os.Setenv(envFor(tool), realPath); err != nil {
			return fmt.Errorf("fusecompat: %w", err)
		}
	}
	path := os.Getenv("PATH")
	if first, _, _ := strings.Cut(path, string(os.PathListSeparator)); first != dir {
		if err := os.Setenv("PATH", dir+string(os.PathListSeparator)+path); err != nil {
			return fmt.Errorf("fusecompat: %w", err)
		}
	}
	return nil
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// Detect reports whether the installed zfs is zfs-fuse-like: it refuses
// `zfs list -p`. Option parsing happens before zfs talks to the daemon, so
// the answer does not depend on any pool existing.
func Detect(ctx context.Context) (bool, error) {
	cmd := exec.CommandContext(ctx, RealBinary(ToolZFS), "list", "-Hp", "-o", "name")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	err := cmd.Run()
	if err == nil {
		return false, nil
	}
	if strings.Contains(stderr.String(), "invalid option 'p'") {
		return true, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return false, fmt.Errorf("fusecompat: zfs list failed: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return false, fmt.Errorf("fusecompat: running zfs: %w", err)
}

// Runner runs one command with the given standard streams and returns its
// exit code; err is set only when the command could not run at all.
type Runner interface {
	Run(argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

type hostRunner struct{}

func (hostRunner) Run(argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 127, err
	}
	return 0, nil
}

// Main is the shim's entry point: args is the whole argv (args[0] is zfs
// or zpool). It returns the exit code.
func Main(args []string) int {
	return run(args, hostRunner{}, os.Stdin, os.Stdout, os.Stderr)
}

func run(args []string, r Runner, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || !IsShim(args[0]) {
		fmt.Fprintf(stderr, "fusecompat: started as %q, not zfs or zpool\n", args)
		return 2
	}
	tool := filepath.Base(args[0])
	realPath := os.Getenv(envFor(tool))
	if realPath == "" {
		fmt.Fprintf(stderr, "fusecompat: %s is not set: the shim does not know the real %s\n", envFor(tool), tool)
		return 127
	}
	s := &shim{real: realPath, r: r, stdin: stdin, stdout: stdout, stderr: stderr}
	rest := args[1:]
	switch {
	case tool == ToolZFS && len(rest) > 0 && rest[0] == "list":
		return s.zfsList(rest[1:])
	case tool == ToolZpool && len(rest) > 0 && rest[0] == "get":
		return s.zpoolGet(rest[1:])
	}
	return s.pass(rest)
}

type shim struct {
	real   string
	r      Runner
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// pass runs the real binary with args, streams untouched.
func (s *shim) pass(args []string) int {
	code, err := s.r.Run(append([]string{s.real}, args...), s.stdin, s.stdout, s.stderr)
	if err != nil {
		fmt.Fprintf(s.stderr, "fusecompat: %v\n", err)
	}
	return code
}

// capture runs the real binary with args and returns its output.
func (s *shim) capture(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code, err := s.r.Run(append([]string{s.real}, args...), nil, &o, &e)
	if err != nil {
		fmt.Fprintf(&e, "fusecompat: %v\n", err)
	}
	return o.String(), e.String(), code
}
