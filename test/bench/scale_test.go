//go:build integration

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// zfsMounts counts the zfs-fuse mounts on this machine (every pool's,
// every process's): the daemon serves about 1000 in all.
func zfsMounts() (int, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	return strings.Count(string(b), " - fuse.zfs "), nil
}

// populate creates volumes fill-FROM..fill-TO through the controller, 8 at
// a time; after the first failure the rest are not tried (each could wait
// out the controller's call timeout).
func (s *stack) populate(from, to int) error {
	var stop atomic.Bool
	_, _, err := timed(to-from, 8, func(ctx context.Context, i int) error {
		if stop.Load() {
			return errors.New("not tried after a failure")
		}
		_, err := s.ctl.CreateVolume(ctx, createReq(fmt.Sprintf("fill-%04d", from+i), volSize))
		if err != nil {
			stop.Store(true)
		}
		return err
	})
	return err
}

// createsAt times n creates one at a time, each deleted (untimed) before
// the next, so the server's count stays where it is.
func (s *stack) createsAt(tag string, n int) ([]time.Duration, error) {
	var ds []time.Duration
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		t0 := time.Now()
		r, err := s.ctl.CreateVolume(ctx, createReq(fmt.Sprintf("probe-%s-%03d", tag, i), volSize))
		ds = append(ds, time.Since(t0))
		if err == nil {
			_, err = s.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.GetVolume().GetVolumeId()})
		}
		cancel()
		if err != nil {
			return ds, err
		}
	}
	return ds, nil
}

// TestScale: creates with 10 and with 800 volumes already on the server,
// and the daemons' memory at both counts. Full mode only: populating 800
// volumes takes minutes with today's create path.
func TestScale(t *testing.T) {
	md := runMode()
	const few, many, perRep = 10, 800, 10
	if md.short {
		report.missing(fmt.Sprintf("create at %d vs %d volumes and the daemons' memory at both: populating the server takes minutes (make bench)", many, few))
		return
	}
	mounts, err := zfsMounts()
	if err != nil {
		t.Fatal(err)
	}
	// A margin for the pools of whatever else runs on the machine.
	if mounts+many+50 > 950 {
		report.missing(fmt.Sprintf("create at %d volumes: %d zfs-fuse mounts exist already and the daemon serves about 1000 for the whole machine", many, mounts))
		return
	}
	s := startStack(t, "4Gi")
	type at struct {
		p50, p99, rawP50           []float64
		controller, server, nfsRSS float64
	}
	// The raw work on the same pool at the same count tells what zfs-fuse
	// itself costs with more datasets mounted, apart from dots.
	r := newRaw(t, s.pool.Name)
	measure := func(count int) at {
		var a at
		for rep := range md.reps {
			ds, err := s.createsAt(fmt.Sprintf("%d-%d", count, rep), perRep)
			if err != nil {
				t.Errorf("creates at %d volumes: %v", count, err)
			}
			a.p50, a.p99 = append(a.p50, percentile(ds, 50)), append(a.p99, percentile(ds, 99))
			var raws []time.Duration
			for i := range perRep {
				name := fmt.Sprintf("raw-%d-%d-%d", count, rep, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				t0 := time.Now()
				err := r.create(ctx, name, volSize)
				raws = append(raws, time.Since(t0))
				if err == nil {
					err = r.destroy(ctx, name)
				}
				cancel()
				if err != nil {
					t.Errorf("raw creates at %d volumes: %v", count, err)
					break
				}
			}
			a.rawP50 = append(a.rawP50, percentile(raws, 50))
		}
		c, err1 := memOf(s.controller.pid())
		sv, err2 := memOf(s.server.pid())
		g, err3 := s.ganeshaRSS()
		if err := first(err1, first(err2, err3)); err != nil {
			t.Error(err)
		}
		a.controller, a.server, a.nfsRSS = c.RSS, sv.RSS, g.RSS
		return a
	}
	if err := s.populate(0, few); err != nil {
		t.Fatal(err)
	}
	small := measure(few)
	t0 := time.Now()
	if err := s.populate(few, many); err != nil {
		report.missing(fmt.Sprintf("create at %d volumes and the memory figures: populating the server failed after %s: %v", many, time.Since(t0).Round(time.Second), err))
		t.Fatalf("populating %d volumes: %v", many, err)
	}
	fmt.Printf("bench: populated %d volumes 8 at a time in %s; note: %s\n", many-few, time.Since(t0).Round(time.Second), mountNote)
	large := measure(many)

	what := fmt.Sprintf("%d creates one at a time through the controller with %d volumes on the server (dots column) vs %d (baseline)", perRep, many, few)
	report.add(t, newFigure("create_p50_800_vs_10", "ms", what, large.p50, small.p50, &Target{Of: "ratio", Op: "<=", Value: 1.2, Source: "issue: create p50 at 800 volumes ≤ 1.2× at 10"}))
	report.add(t, newFigure("create_p99_800_vs_10", "ms", what, large.p99, small.p99, nil))
	report.add(t, newFigure("raw_create_p50_800_vs_10", "ms", fmt.Sprintf("%d raw creates (zfs create + export over DBus on a ganesha of its own) on the same pool with %d dots volumes on it (dots column) vs %d (baseline): zfs-fuse's own cost of more datasets", perRep, many, few),
		large.rawP50, small.rawP50, nil))
	report.add(t, newFigure("create_p50_at_800_vs_raw", "ms", fmt.Sprintf("dots' create p50 vs the raw work's, both with %d volumes on the pool", many),
		large.p50, large.rawP50, nil))
	for _, m := range []struct {
		name      string
		got, base float64
		whose     string
	}{
		{"controller_rss_800_vs_10", large.controller, small.controller, "the controller's"},
		{"server_rss_800_vs_10", large.server, small.server, "the storage server's (dots server)"},
		{"ganesha_rss_800_vs_10", large.nfsRSS, small.nfsRSS, "the server's NFS-Ganesha's"},
	} {
		report.add(t, newFigure(m.name, "MiB", fmt.Sprintf("%s resident memory with %d volumes (dots column) vs %d (baseline)", m.whose, many, few),
			[]float64{m.got}, []float64{m.base}, nil))
	}
}
