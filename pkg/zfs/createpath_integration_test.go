//go:build integration

package zfs_test

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/testenv"
	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// TestCreatePathFigures measures what the index and the in-memory export
// ids are for: Pool.CreateVolume and DeleteVolume against the raw work,
// `zfs create` with the same properties and `zfs destroy`, on the same
// pool in the same run, interleaved so both see the same machine. It
// prints one line per figure; the ratios are dots/raw (1.0: no overhead).
// `make bench` measures the whole server path (with exports); this is the
// pool's part.
func TestCreatePathFigures(t *testing.T) {
	p, _, _ := openCounted(t)
	c := ctx(t)
	raw := p.Name() + "/raw"
	testenv.Zfs(t, "create", raw)
	const n = 30
	const size = 10 << 20
	rawArgs := func(i int) []string {
		name := "r" + strconv.Itoa(i)
		return []string{"create", "-o", "refquota=" + strconv.Itoa(size), "-o", "dots:name=" + name,
			"-o", "dots:capacity=" + strconv.Itoa(size), "-o", "dots:thick=false", "-o", "dots:exportid=" + strconv.Itoa(60000+i),
			"-o", "dots:created=" + time.Now().UTC().Format(time.RFC3339Nano), raw + "/" + name}
	}
	var dotsCreate, rawCreate, dotsDelete, rawDelete []time.Duration
	for i := range n {
		t0 := time.Now()
		mustCreate(t, p, zfs.VolumeSpec{Name: "d" + strconv.Itoa(i), Capacity: size})
		dotsCreate = append(dotsCreate, time.Since(t0))
		t0 = time.Now()
		testenv.Zfs(t, rawArgs(i)...)
		rawCreate = append(rawCreate, time.Since(t0))
	}
	for i := range n {
		t0 := time.Now()
		if err := p.DeleteVolume(c, "d"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		dotsDelete = append(dotsDelete, time.Since(t0))
		t0 = time.Now()
		rawDestroy(t, raw+"/r"+strconv.Itoa(i))
		rawDelete = append(rawDelete, time.Since(t0))
	}
	figure("create-path", dotsCreate, rawCreate)
	figure("delete-path", dotsDelete, rawDelete)

	// Eight at a time: creates of one pool must not wait for each other.
	const workers, each = 8, 4
	run := func(create func(w, i int)) time.Duration {
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					create(w, i)
				}
			})
		}
		wg.Wait()
		return time.Since(t0)
	}
	r := testenv.Runner(t)
	var dotsWall, rawWall time.Duration
	// Rounds in the order dots, raw, raw, dots: a drift over the run (the
	// pool filling) weighs on both alike.
	for round, dotsFirst := range []bool{true, false} {
		dotsRound := func() {
			dotsWall += run(func(w, i int) {
				if _, err := p.CreateVolume(c, zfs.VolumeSpec{Name: fmt.Sprintf("c%d-%d-%d", round, w, i), Capacity: size}); err != nil {
					t.Error(err)
				}
			})
		}
		rawRound := func() {
			rawWall += run(func(w, i int) {
				if _, err := r.Run(c, command.Z(rawArgs(1000*(round+1)+w*each+i)...)); err != nil {
					t.Error(err)
				}
			})
		}
		if dotsFirst {
			dotsRound()
			rawRound()
		} else {
			rawRound()
			dotsRound()
		}
	}
	total := float64(2 * workers * each)
	dotsRate, rawRate := total/dotsWall.Seconds(), total/rawWall.Seconds()
	fmt.Printf("create-throughput-c8: dots_per_s=%.1f raw_per_s=%.1f ratio=%.2f n=%d\n", dotsRate, rawRate, dotsRate/rawRate, 2*workers*each)
}

// figure prints p50 and p99 of dots and raw and their ratios.
func figure(name string, dots, raw []time.Duration) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	dp50, rp50 := ms(percentile(dots, 50)), ms(percentile(raw, 50))
	dp99, rp99 := ms(percentile(dots, 99)), ms(percentile(raw, 99))
	fmt.Printf("%s: dots_p50_ms=%.1f raw_p50_ms=%.1f ratio=%.2f dots_p99_ms=%.1f raw_p99_ms=%.1f ratio_p99=%.2f n=%d\n",
		name, dp50, rp50, dp50/rp50, dp99, rp99, dp99/rp99, len(dots))
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

// rawDestroy is `zfs destroy` as a caller must run it: again while
// zfs-fuse says the dataset is busy, with DeleteVolume's own retry.
func rawDestroy(t testing.TB, ds string) {
	t.Helper()
	if err := zfs.DestroyRetrying(ctx(t), testenv.Runner(t), ds); err != nil {
		t.Fatalf("zfs destroy %s: %v", ds, err)
	}
}
