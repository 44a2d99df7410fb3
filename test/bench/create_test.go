//go:build integration

package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

const volSize = 16 << 20

// side is one way of creating and deleting volumes: dots through the
// controller, or raw.
type side struct {
	create func(ctx context.Context, name string) error
	delete func(ctx context.Context, name string) error
}

func (s *stack) dotsSide() side {
	var ids sync.Map // name → volume ID
	return side{
		create: func(ctx context.Context, name string) error {
			r, err := s.ctl.CreateVolume(ctx, createReq(name, volSize))
			if err == nil {
				ids.Store(name, r.GetVolume().GetVolumeId())
			}
			return err
		},
		delete: func(ctx context.Context, name string) error {
			id, _ := ids.LoadAndDelete(name)
			_, err := s.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: fmt.Sprint(id)})
			return err
		},
	}
}

func (r *raw) side() side {
	return side{
		create: func(ctx context.Context, name string) error { return r.create(ctx, name, volSize) },
		delete: r.destroy,
	}
}

// batch is one repetition of one side at one concurrency.
type batch struct {
	create, delete []time.Duration
	createWall     time.Duration
	deleteWall     time.Duration
}

func runBatch(sd side, prefix string, n, conc int) (batch, error) {
	var b batch
	name := func(i int) string { return fmt.Sprintf("%s-%03d", prefix, i) }
	var err error
	b.create, b.createWall, err = timed(n, conc, func(ctx context.Context, i int) error { return sd.create(ctx, name(i)) })
	if err != nil {
		return b, fmt.Errorf("creates: %w", err)
	}
	b.delete, b.deleteWall, err = timed(n, conc, func(ctx context.Context, i int) error { return sd.delete(ctx, name(i)) })
	if err != nil {
		return b, fmt.Errorf("deletes: %w", err)
	}
	return b, nil
}

// TestCreateDelete: dots' CreateVolume and DeleteVolume (through the
// controller and the server, each its own process) against the raw work
// on the same pool, one at a time and 8 at once, repetitions alternating
// which side goes first.
func TestCreateDelete(t *testing.T) {
	md := runMode()
	// -short keeps 16 creates at concurrency 8: 48 wedged zfs-fuse twice
	// in an afternoon (8 concurrent `zfs create` mounting under one
	// parent, the raw side both times; README, Performance).
	n1, n8 := 20, 48
	if md.short {
		n8 = 16
	}
	s := startStack(t, "2Gi")
	r := newRaw(t, s.pool.Name)
	sides := map[string]side{"dots": s.dotsSide(), "raw": r.side()}
	type key struct {
		side string
		conc int
	}
	got := map[key][]batch{}
	var errs error
	// A round of each side, untimed: the first creates on a fresh pool
	// and server (and right after other tests, on a zfs-fuse still
	// finishing their work) are not what either side costs.
	for _, sd := range []string{"dots", "raw"} {
		for _, conc := range []int{1, 8} {
			_, err := runBatch(sides[sd], fmt.Sprintf("%s-c%d-warm", sd, conc), 8, conc)
			errs = first(errs, err)
		}
	}
	for rep := range md.reps {
		order := []string{"dots", "raw"}
		if rep%2 == 1 {
			order = []string{"raw", "dots"}
		}
		for _, conc := range []int{1, 8} {
			n := map[int]int{1: n1, 8: n8}[conc]
			for _, sd := range order {
				b, err := runBatch(sides[sd], fmt.Sprintf("%s-c%d-r%d", sd, conc, rep), n, conc)
				errs = first(errs, err)
				got[key{sd, conc}] = append(got[key{sd, conc}], b)
			}
		}
	}
	pick := func(sd string, conc int, f func(batch) float64) []float64 {
		var out []float64
		for _, b := range got[key{sd, conc}] {
			out = append(out, f(b))
		}
		return out
	}
	type fig struct {
		name   string
		conc   int
		unit   string
		f      func(batch) float64
		target *Target
	}
	ratio := func(op string, v float64, what string) *Target {
		return &Target{Of: "ratio", Op: op, Value: v, Source: "issue: " + what}
	}
	figs := []fig{
		{"create_p50_c1", 1, "ms", func(b batch) float64 { return percentile(b.create, 50) }, ratio("<=", 1.3, "create p50 ≤ 1.3× raw at concurrency 1")},
		{"create_p99_c1", 1, "ms", func(b batch) float64 { return percentile(b.create, 99) }, ratio("<=", 1.6, "create p99 ≤ 1.6× raw at concurrency 1")},
		{"create_ops_c1", 1, "ops/s", func(b batch) float64 { return float64(len(b.create)) / b.createWall.Seconds() }, nil},
		{"delete_p50_c1", 1, "ms", func(b batch) float64 { return percentile(b.delete, 50) }, ratio("<=", 1.3, "delete p50 ≤ 1.3× raw")},
		{"delete_p99_c1", 1, "ms", func(b batch) float64 { return percentile(b.delete, 99) }, nil},
		{"create_p50_c8", 8, "ms", func(b batch) float64 { return percentile(b.create, 50) }, nil},
		{"create_p99_c8", 8, "ms", func(b batch) float64 { return percentile(b.create, 99) }, nil},
		{"create_ops_c8", 8, "ops/s", func(b batch) float64 { return float64(len(b.create)) / b.createWall.Seconds() }, ratio(">=", 0.8, "throughput at concurrency 8 ≥ 0.8× raw")},
		{"delete_p50_c8", 8, "ms", func(b batch) float64 { return percentile(b.delete, 50) }, nil},
		{"delete_p99_c8", 8, "ms", func(b batch) float64 { return percentile(b.delete, 99) }, nil},
		{"delete_ops_c8", 8, "ops/s", func(b batch) float64 { return float64(len(b.delete)) / b.deleteWall.Seconds() }, nil},
	}
	for _, f := range figs {
		n := map[int]int{1: n1, 8: n8}[f.conc]
		what := fmt.Sprintf("%d volumes of 16 MiB per repetition, %d at a time: dots' CSI call through the controller; baseline: zfs create with the same properties + a ganesha export, "+
			"served (pkg/nfs), on the same pool (delete: export removal + zfs destroy)", n, f.conc)
		fg := newFigure(f.name, f.unit, what, pick("dots", f.conc, f.f), pick("raw", f.conc, f.f), f.target)
		// A p99 of -short's 20 creates is their slowest one: on two shared
		// cores its ratio spans 1.1..2.6 within one run (seen in CI), so in
		// -short it is reported, and only the full bench (more creates)
		// holds it to its target.
		fg.Fatal = md.short && f.target != nil && !strings.Contains(f.name, "_p99_")
		failed(&fg, errs)
		report.add(t, fg)
	}
}
