//go:build integration

package faults

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dots-csi/dots/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func mountCaps() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}
}

func createReq(name string, size int64) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountCaps(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: size}}
}

// process is a process found in /proc.
type process struct {
	pid   int
	ppid  int
	state string // R, S, T (stopped), Z, ...
	argv  []string
}

// processes lists the live processes whose command line contains every
// word of match.
func processes(match ...string) []process {
	var out []process
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		raw, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		line := strings.ReplaceAll(strings.TrimRight(string(raw), "\x00"), "\x00", " ")
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(line, m)
		}
		if !ok {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(rest) < 2 || rest[0] == "Z" {
			continue // gone, or a zombie: it holds nothing
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		ppid, _ := strconv.Atoi(rest[1])
		out = append(out, process{pid: pid, ppid: ppid, state: rest[0], argv: strings.Fields(line)})
	}
	return out
}

// readyz returns the status code and body of a daemon's /readyz.
func readyz(addr string) (int, string, error) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Actions of a wrapper on the call it catches.
const (
	// stopItself: the call stops (SIGSTOP) before it runs the real zfs,
	// as a zfs command stuck in the kernel would sit.
	stopItself = `kill -STOP $$`
	// becomeSleep: the call turns into a long sleep in the same process,
	// a command that would run on if nothing killed it.
	becomeSleep = `exec sleep 300`
)

// wrapper writes a shell script that stands in for zfs: the first call
// whose arguments match the shell pattern does action first; every other
// call is the real zfs.
func wrapper(t *testing.T, realZFS, pattern, action string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "zfs")
	script := fmt.Sprintf(`#!/bin/sh
case "$*" in
%s)
	if mkdir %q 2>/dev/null; then
		%s
	fi ;;
esac
exec %q "$@"
`, pattern, filepath.Join(dir, "caught-once"), action, realZFS)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// containsLine reports whether text has line as one of its lines.
func containsLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// alive reports whether a process exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	rest := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(rest) > 0 && rest[0] != "Z"
}
