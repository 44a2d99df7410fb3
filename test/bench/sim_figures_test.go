//go:build integration

package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// simSizes: 100 servers in both modes (the fan-out the targets are about);
// 10,000 volumes each in full mode (the 1,000,000), 1,000 in -short.
func simSizes(md mode) (servers, perServer, creates int) {
	if md.short {
		return 100, 1000, 50
	}
	return 100, 10000, 200
}

// failed marks a figure whose measurement itself went wrong (creates
// refused, a listing cut short): it missed, whatever its numbers say.
func failed(f *Figure, err error) {
	if err == nil {
		return
	}
	no := false
	f.OK = &no
	f.Error = err.Error()
}

// TestSimulated: the real controller over 100 in-memory servers (the same
// gRPC API, over mutual TLS) holding the million volumes: a full
// ListVolumes pass, creates (placement and routing), the controller's
// memory, and the cost of a health-check round.
func TestSimulated(t *testing.T) {
	md := runMode()
	// Five passes in -short too (about a second each): the median of three
	// straddled its limit on a busy machine (0.84..1.16 s the same day).
	md.reps = max(md.reps, 5)
	nServers, perServer, nCreates := simSizes(md)
	total := nServers * perServer
	c := newSimCluster(t, nServers)

	// Baseline of the memory figure: the same controller over the same
	// servers holding 10 volumes each, after the same kinds of work.
	c.fill(10)
	c.startController("controller-small")
	if _, _, err := c.controllerPass(); err != nil {
		t.Errorf("list at 10 volumes per server: %v", err)
	}
	c.createRound(0, nCreates)
	small, err := memOf(c.ctl.pid())
	if err != nil {
		t.Fatal(err)
	}
	c.ctl.stop(t)

	c.fill(perServer)
	start := c.startController("controller")
	report.add(t, newFigure("sim_controller_start", "ms",
		fmt.Sprintf("the controller from exec until it serves and has imported the placements of %d volumes on %d servers", total, nServers),
		[]float64{ms(start)}, nil, nil))

	listTarget := &Target{Of: "dots", Op: "<=", Value: 10000, Source: "issue: full ListVolumes pass over 1,000,000 volumes < 10 s"}
	if md.short {
		listTarget = &Target{Of: "dots", Op: "<=", Value: 10000 * float64(total) / 1e6, Source: "issue's 10 s per 1,000,000 volumes, scaled to this run's volumes"}
	}
	// One pass of each, untimed: the first reads of 100 servers set up
	// what later passes reuse (connections, buffers), on both sides.
	if _, _, err := c.controllerPass(); err != nil {
		t.Errorf("warm-up pass: %v", err)
	}
	if _, _, err := c.directPass(); err != nil {
		t.Errorf("warm-up direct pass: %v", err)
	}
	var passes, directs, p50s, p99s, dp50s, dp99s, rounds, drounds []float64
	var listErr, createErr, roundErr error
	var roundCPU time.Duration
	var roundLists, roundListed int64
	for rep := range md.reps {
		d, n, err := c.controllerPass()
		if err == nil && n != total {
			err = fmt.Errorf("the pass returned %d of %d volumes", n, total)
		}
		listErr = first(listErr, err)
		passes = append(passes, ms(d))
		d, _, err = c.directPass()
		listErr = first(listErr, err)
		directs = append(directs, ms(d))

		ds, err := c.createRound(rep+1, nCreates)
		createErr = first(createErr, err)
		p50s, p99s = append(p50s, percentile(ds, 50)), append(p99s, percentile(ds, 99))
		ds = c.directCreateRound(rep+1, nCreates)
		dp50s, dp99s = append(dp50s, percentile(ds, 50)), append(dp99s, percentile(ds, 99))

		st0 := c.stats()
		cpu0, _ := cpuOf(c.ctl.pid())
		d, err = c.healthRound()
		cpu1, _ := cpuOf(c.ctl.pid())
		st1 := c.stats()
		roundCPU += cpu1 - cpu0
		roundLists += st1.Lists - st0.Lists
		roundListed += st1.Listed - st0.Listed
		roundErr = first(roundErr, err)
		rounds, drounds = append(rounds, ms(d)), append(drounds, ms(c.directRound()))
	}

	f := newFigure("sim_list_pass", "ms", fmt.Sprintf("a full ListVolumes pass through the controller in pages of %d over %d volumes on %d servers; "+
		"baseline: the same pages straight from each server in turn", simPage, total, nServers), passes, directs, listTarget)
	f.Fatal = md.short
	failed(&f, listErr)
	report.add(t, f)

	what := fmt.Sprintf("%d creates one at a time through the controller (placement, placement record, routing) with %d volumes on %d servers; "+
		"baseline: the same creates sent straight to a server", nCreates, total, nServers)
	f = newFigure("sim_create_p50", "ms", what, p50s, dp50s, nil)
	failed(&f, createErr)
	report.add(t, f)
	f = newFigure("sim_create_p99", "ms", what, p99s, dp99s, &Target{Of: "dots", Op: "<=", Value: 50, Source: "issue: create p99 < 50 ms at 1,000,000 volumes over 100 servers"})
	f.Fatal = md.short
	failed(&f, createErr)
	report.add(t, f)

	mem, err := memOf(c.ctl.pid())
	if err != nil {
		t.Fatal(err)
	}
	var memTarget *Target
	if !md.short {
		memTarget = &Target{Of: "dots", Op: "<=", Value: 300, Source: "issue: controller RSS < 300 MiB at 1,000,000 volumes"}
	}
	f = newFigure("sim_controller_rss", "MiB", fmt.Sprintf("the controller's resident memory after the passes, creates and probe rounds at %d volumes (peak %.0f MiB); "+
		"baseline: the same at 10 volumes per server (peak %.0f MiB)", total, mem.Peak, small.Peak), []float64{mem.RSS}, []float64{small.RSS}, memTarget)
	report.add(t, f)

	reps := int64(md.reps)
	f = newFigure("sim_health_round", "ms", fmt.Sprintf("one registry probe round over %d servers (/servers, fresh), per round %d ListVolumes calls and %d entries listed by the servers "+
		"and controller CPU %.0f ms; baseline: each server's manifest (pool figures and counts) and Probe, all at once",
		nServers, roundLists/reps, roundListed/reps, ms(roundCPU)/float64(reps)), rounds, drounds, nil)
	failed(&f, roundErr)
	report.add(t, f)
}

func first(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// createRound creates n volumes through the controller one at a time,
// then deletes them (not timed), so every round sees the same count.
func (c *simCluster) createRound(rep, n int) ([]time.Duration, error) {
	var ids []string
	ds, _, err := timed(n, 1, func(ctx context.Context, i int) error {
		r, err := c.cc.CreateVolume(ctx, createReq(fmt.Sprintf("sim-%d-%04d", rep, i), 1<<30))
		if err == nil {
			ids = append(ids, r.GetVolume().GetVolumeId())
		}
		return err
	})
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if _, derr := c.cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); derr != nil {
			c.t.Errorf("deleting %s: %v", id, derr)
		}
		cancel()
	}
	return ds, err
}

// directCreateRound is createRound straight to the servers, in turn.
func (c *simCluster) directCreateRound(rep, n int) []time.Duration {
	ids := make([]string, n)
	ds, _, err := timed(n, 1, func(ctx context.Context, i int) error {
		r, err := c.direct[i%len(c.direct)].CreateVolume(ctx, createReq(fmt.Sprintf("direct-%d-%04d", rep, i), 1<<30))
		ids[i] = r.GetVolume().GetVolumeId()
		return err
	})
	if err != nil {
		c.t.Errorf("direct creates: %v", err)
	}
	for i, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if _, err := c.direct[i%len(c.direct)].DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			c.t.Errorf("deleting %s: %v", id, err)
		}
		cancel()
	}
	return ds
}
