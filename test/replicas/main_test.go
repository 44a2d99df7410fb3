//go:build integration

package replicas

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/replenv"
	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/api"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// prefix names this package's test pools.
const prefix = "dotsrs"

// interval is the replication interval of the tests: short, so a test
// waits a few of them.
func interval() time.Duration {
	if testing.Short() {
		return time.Second
	}
	return 2 * time.Second
}

// cluster starts n servers (s0, s1, ...) in turn (NFSv3 servers starting
// together race in rpcbind).
func cluster(t *testing.T, n int, extra ...string) []*replenv.Server {
	t.Helper()
	var out []*replenv.Server
	for i := range n {
		out = append(out, replenv.Start(t, prefix, fmt.Sprintf("s%d", i), extra...))
	}
	return out
}

// volume is a volume a test writes to, and what it wrote.
type volume struct {
	id, export string
	files      map[string]string // name → checksum of what was acknowledged
}

// newVolume creates a volume on primary through CSI and makes replicas
// its replicas (SetReplicas, as the controller does after the create).
func newVolume(t *testing.T, primary *replenv.Server, name string, size int64, every time.Duration, replicas ...*replenv.Server) *volume {
	t.Helper()
	export := primary.CreateVolume(t, name, size, nil)
	v := &volume{id: api.IDFor(name), export: export, files: map[string]string{}}
	if len(replicas) > 0 {
		setReplicas(t, primary, v.id, every, replicas...)
	}
	return v
}

func setReplicas(t *testing.T, primary *replenv.Server, id string, every time.Duration, replicas ...*replenv.Server) {
	t.Helper()
	var peers []api.Peer
	for _, r := range replicas {
		peers = append(peers, r.Peer())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := primary.Replication().SetReplicas(ctx, api.SetReplicasRequest{Volume: id, Interval: every, Replicas: peers}); err != nil {
		t.Fatalf("SetReplicas of %s on %s: %v", id, primary.Name, err)
	}
}

// write writes one file through the server's NFS export and records it.
func (v *volume) write(t *testing.T, s *replenv.Server, name string, data []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.NFS().WriteFile(ctx, v.export, name, data); err != nil {
		return err
	}
	v.files[name] = replenv.Sum(data)
	return nil
}

func (v *volume) mustWrite(t *testing.T, s *replenv.Server, name string, data []byte) {
	t.Helper()
	if err := v.write(t, s, name, data); err != nil {
		t.Fatalf("writing %s through %s's export: %v", name, s.Name, err)
	}
}

// readNFS reads a file through a server's export.
func readNFS(t *testing.T, s *replenv.Server, export, name string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return s.NFS().ReadFile(ctx, export, name)
}

// replicaSums reads what replica holds of volume at its newest
// replication snapshot.
func replicaSums(t *testing.T, replica *replenv.Server, id string) (map[string]string, string) {
	t.Helper()
	ds := replica.Dataset("replicas/" + id)
	snaps := replica.Snapshots(t, ds)
	var latest string
	for _, s := range slices.Backward(snaps) {
		if strings.HasPrefix(s, "dots-repl-") {
			latest = s
			break
		}
	}
	if latest == "" {
		t.Fatalf("%s holds no replication snapshot of %s: %v", replica.Name, id, snaps)
	}
	var sums map[string]string
	replica.WithClone(t, ds+"@"+latest, func(dir string) { sums = replenv.ReadSums(t, dir) })
	return sums, latest
}

// sameFiles fails unless got holds every file of want with its checksum.
func sameFiles(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	var bad []string
	for name, sum := range want {
		if got[name] != sum {
			bad = append(bad, name)
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Fatalf("%s: %d of %d files missing or different: %v", what, len(bad), len(want), bad[:min(len(bad), 10)])
	}
}

// percentile of sorted values (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// promoteOn promotes s's replica of id at the generation after the one it
// holds, with replicas, and returns s's state from before.
func promoteOn(t *testing.T, s *replenv.Server, id string, every time.Duration, replicas ...*replenv.Server) api.VolumeState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s.Replication().State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var peers []api.Peer
	for _, r := range replicas {
		peers = append(peers, r.Peer())
	}
	if _, err := s.Replication().Promote(ctx, api.PromoteRequest{Volume: id, Generation: st.Generation + 1,
		Interval: every, Replicas: peers}); err != nil {
		t.Fatalf("promoting %s on %s: %v", id, s.Name, err)
	}
	return st
}
