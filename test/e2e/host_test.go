package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// poolPrefix names this run's pools "dotse-PID-RAND": the PID tells a later
// run whether the creator is gone.
const poolPrefix = "dotse-"

var stalePool = regexp.MustCompile(`^` + poolPrefix + `(\d+)-`)

// destroyStalePools destroys pools of earlier runs whose process is dead.
func destroyStalePools(t *testing.T) {
	t.Helper()
	out, err := run(context.Background(), "zpool", "list", "-H", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields(out) {
		m := stalePool.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		t.Logf("destroying pool %s left by dead process %d", name, pid)
		destroyPool(t, name)
	}
}

// destroyPool destroys a pool, retrying while zfs-fuse reports it busy.
func destroyPool(t *testing.T, pool string) {
	if err := eventually(10*time.Second, func() error {
		if _, err := run(context.Background(), "zpool", "list", "-H", "-o", "name", pool); err != nil {
			return nil // gone (or never created)
		}
		_, err := run(context.Background(), "zpool", "destroy", "-f", pool)
		return err
	}); err != nil {
		t.Errorf("pool %s not destroyed: %v", pool, err)
	}
}

// datasetOf finds the dataset of volume (the part of a volume ID after the
// server) in pool: "" when there is none.
func datasetOf(t *testing.T, pool, volume string) string {
	t.Helper()
	out, err := run(context.Background(), "zfs", "list", "-H", "-o", "name", "-r", pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, ds := range strings.Fields(out) {
		if filepath.Base(ds) == volume {
			return ds
		}
	}
	return ""
}

// zfsProp reads one property's exact value.
func zfsProp(t *testing.T, dataset, prop string) string {
	t.Helper()
	out, err := run(context.Background(), "zfs", "get", "-Hp", prop, dataset)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(strings.TrimSpace(out), "\t")
	if len(f) < 3 {
		t.Fatalf("zfs get %s %s: %q", prop, dataset, out)
	}
	return f[2]
}

// nfsURL addresses a file in an export over NFSv3 on fixed ports.
func nfsURL(export, file string, s *dotsServer) string {
	return fmt.Sprintf("nfs://127.0.0.1%s/%s?nfsport=%d&mountport=%d&version=3", export, file, s.nfsPort, s.mountPort)
}

// nfsWrite writes data to a file in the export with the libnfs client.
func nfsWrite(t *testing.T, url string, data []byte) {
	t.Helper()
	if err := nfsTryWrite(t, url, data); err != nil {
		t.Fatal(err)
	}
}

func nfsTryWrite(t *testing.T, url string, data []byte) error {
	t.Helper()
	local := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := run(context.Background(), "nfs-cp", local, url) // err holds the output
	return err
}

// nfsRead reads a file from an export with the libnfs client.
func nfsRead(t *testing.T, url string) string {
	t.Helper()
	out, err := nfsTryRead(url)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func nfsTryRead(url string) (string, error) {
	// stdout only: it is the file's content.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nfs-cat", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("nfs-cat %s: %v: %s", url, err, stderr.String())
	}
	return string(out), nil
}

// mountsUnder lists the mount points below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// workDir makes the run's directory and removes it at the very end, after
// unmounting anything a failed step left (deepest first).
func workDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dots-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		left := mountsUnder(dir)
		for i := len(left) - 1; i >= 0; i-- {
			t.Logf("unmounting leftover %s", left[i])
			_ = syscall.Unmount(left[i], syscall.MNT_DETACH)
		}
		if t.Failed() && os.Getenv("DOTS_E2E_KEEP") != "" {
			t.Logf("logs kept in %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// requireHost fails (never skips) when the machine lacks what the test
// needs; `make deps` installs it.
func requireHost(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the e2e test needs root (ZFS pools, mounts)")
	}
	for _, c := range []string{"zpool", "zfs", "ganesha.nfsd", "nfs-cp", "nfs-cat", "rpcbind"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Fatalf("%s not found: run `make deps`", c)
		}
	}
	if _, err := run(context.Background(), "zpool", "list"); err != nil {
		t.Fatalf("zfs-fuse is not running (`make deps` starts it): %v", err)
	}
	if _, err := run(context.Background(), "rpcinfo", "-p", "127.0.0.1"); err != nil {
		t.Fatalf("rpcbind is not running (`make deps` starts it; NFSv3 for the libnfs client needs it): %v", err)
	}
}
