package replenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// Sum is a file's SHA-256, hex.
func Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// RandomData is n random bytes.
func RandomData(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// ReadSums is the SHA-256 of every regular file under dir, by path
// relative to dir.
func ReadSums(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = Sum(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// WithClone mounts a clone of snapshot (a full name, DATASET@SNAP, of the
// server's pool) read-only outside dots' datasets, calls fn with its
// directory and destroys it: replicas and diverged copies are never
// mounted, so this is how a test reads what one holds.
func (s *Server) WithClone(t testing.TB, snapshot string, fn func(dir string)) {
	t.Helper()
	clone := fmt.Sprintf("%s/chk-%d", s.Pool.Name, time.Now().UnixNano())
	dir := filepath.Join(s.Pool.Dir, "chk", strconv.FormatInt(time.Now().UnixNano(), 36))
	testenv.Zfs(t, "clone", "-o", "mountpoint="+dir, "-o", "readonly=on", snapshot, clone)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// zfs-fuse reports a dataset busy right after an unmount: a few
		// tries (poll.Wait, as tests wait).
		err := poll.Wait(30*time.Second, func() error {
			_, err := testenv.Runner(t).Run(ctx, command.Z("destroy", clone))
			return err
		})
		if err != nil {
			t.Errorf("destroying the clone %s: %v", clone, err)
		}
	}()
	fn(dir)
}

// Snapshots lists the snapshots (names after @) of a dataset of the
// server's pool, oldest first.
func (s *Server) Snapshots(t testing.TB, dataset string) []string {
	t.Helper()
	out := testenv.Zfs(t, "list", "-H", "-t", "snapshot", "-o", "name", "-s", "creation", "-r", dataset)
	var snaps []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if ds, snap, ok := strings.Cut(l, "@"); ok && ds == dataset {
			snaps = append(snaps, snap)
		}
	}
	return snaps
}

// ReplicaStatus is the primary's status of one replica of volume.
func (s *Server) ReplicaStatus(t testing.TB, volume, replica string) api.ReplicaStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s.Replication().State(ctx, volume)
	if err != nil {
		t.Fatalf("state of %s on %s: %v", volume, s.Name, err)
	}
	i := slices.IndexFunc(st.Replicas, func(r api.ReplicaStatus) bool { return r.Server == replica })
	if i < 0 {
		t.Fatalf("%s on %s has no replica %s: %+v", volume, s.Name, replica, st)
	}
	return st.Replicas[i]
}

// WaitSynced waits until replica (a server) holds a replication snapshot
// of volume taken after after, as the replica itself reports it, and
// returns its state.
func WaitSynced(t testing.TB, replica *Server, volume string, after time.Time, timeout time.Duration) api.VolumeState {
	t.Helper()
	var st api.VolumeState
	poll.Until(t, timeout, fmt.Sprintf("%s holding a snapshot of %s after %s", replica.Name, volume, after.Format(time.RFC3339Nano)), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		st, err = replica.Replication().State(ctx, volume)
		switch {
		case err != nil:
			return err
		case !st.LatestTime.After(after):
			return fmt.Errorf("newest snapshot %s (%s)", st.Latest, st.LatestTime.Format(time.RFC3339Nano))
		}
		return nil
	})
	return st
}

// RecvRunning says whether a `zfs recv` into the server's pool runs now.
func (s *Server) RecvRunning() bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(argv) > 2 && filepath.Base(argv[0]) == "zfs" && (argv[1] == "recv" || argv[1] == "receive") &&
			strings.HasPrefix(argv[len(argv)-1], s.Pool.Name+"/") {
			return true
		}
	}
	return false
}

// MetricSum is the sum of every series of a metric (by its full name, e.g.
// dots_zfs_commands_total or dots_replication_seconds_count) the server
// exports now.
func (s *Server) MetricSum(t testing.TB, name string) float64 {
	t.Helper()
	var sum float64
	for _, l := range strings.Split(s.Metrics(t), "\n") {
		if !strings.HasPrefix(l, name+" ") && !strings.HasPrefix(l, name+"{") {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", l, err)
		}
		sum += v
	}
	return sum
}
