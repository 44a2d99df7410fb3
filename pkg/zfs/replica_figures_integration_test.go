//go:build integration

package zfs_test

import (
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// TestReplicationStepFigures measures one replication step (snapshot,
// incremental send into the other pool's replica, hold and prune on both
// sides) against the bare commands it is made of (zfs snapshot, zfs send
// -i | zfs recv -F, nothing else) in the same run, and a full stream's
// throughput. Printed, not asserted: it is the floor the replication
// interval and the lag stand on (zfs-fuse here).
func TestReplicationStepFigures(t *testing.T) {
	a, b := replPools(t)
	c := ctx(t)
	const steps = 8
	const stepBytes = 256 << 10
	v := mustCreate(t, a, zfs.VolumeSpec{Name: "v", Capacity: 256 * mib})
	raw := mustCreate(t, a, zfs.VolumeSpec{Name: "raw", Capacity: 256 * mib})
	writeRandom(t, v.Mountpoint, "full", 32<<20)
	writeRandom(t, raw.Mountpoint, "full", 32<<20)

	start := time.Now()
	s, _, err := a.ReplSnapshot(c, "v")
	if err != nil {
		t.Fatal(err)
	}
	mustStream(t, a, b, v, "", s)
	full := time.Since(start)

	r := testenv.Runner(t)
	rawDst := b.Name() + "/raw"
	testenv.Zfs(t, "create", "-o", "mountpoint=none", rawDst)
	rawStream := func(base, snap string) {
		t.Helper()
		args := []string{"send"}
		if base != "" {
			args = append(args, "-i", raw.Dataset+"@"+base)
		}
		pr, pw := io.Pipe()
		send := command.Z(append(args, raw.Dataset+"@"+snap)...)
		send.Stdout = pw
		go func() {
			_, err := r.Run(c, send)
			pw.CloseWithError(err)
		}()
		recv := command.Z("recv", "-F", rawDst+"/v")
		recv.Stdin = pr
		if _, err := r.Run(c, recv); err != nil {
			t.Fatalf("raw recv: %v", err)
		}
		pr.Close()
	}
	testenv.Zfs(t, "snapshot", raw.Dataset+"@r0")
	rawStream("", "r0")
	var apiTimes, rawTimes []time.Duration
	for i := 1; i <= steps; i++ {
		writeRandom(t, v.Mountpoint, fmt.Sprintf("step-%d", i), stepBytes)
		writeRandom(t, raw.Mountpoint, fmt.Sprintf("step-%d", i), stepBytes)

		t0 := time.Now()
		next, _, err := a.ReplSnapshot(c, "v")
		if err != nil {
			t.Fatal(err)
		}
		mustStream(t, a, b, v, s, next)
		if err := a.ReplicationSent(c, "v", next, nil); err != nil {
			t.Fatal(err)
		}
		apiTimes = append(apiTimes, time.Since(t0))
		s = next

		t0 = time.Now()
		testenv.Zfs(t, "snapshot", fmt.Sprintf("%s@r%d", raw.Dataset, i))
		rawStream(fmt.Sprintf("r%d", i-1), fmt.Sprintf("r%d", i))
		rawTimes = append(rawTimes, time.Since(t0))
	}
	if got := replSnaps(t, replicaDS(b, "v")); !slices.Equal(got, []string{s}) {
		t.Errorf("replica keeps %v, want [%s]", got, s)
	}
	apiP50, rawP50 := median(apiTimes), median(rawTimes)
	fmt.Printf("zfs-replication-step: steps=%d step_kib=%d api_ms_p50=%.0f raw_ms_p50=%.0f ratio=%.2f full_mib=32 full_mib_s=%.1f\n",
		steps, stepBytes>>10, ms(apiP50), ms(rawP50), float64(apiP50)/float64(rawP50), 32/full.Seconds())
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
