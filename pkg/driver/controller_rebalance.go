package driver

import (
	"context"
	"fmt"
	"slices"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
)

// maxRebalanceMoves bounds one rebalance: each move re-plans from the
// figures it changed, so this only stops a plan that cannot converge.
const maxRebalanceMoves = 1000

// serverUse is a server's used and total bytes during a rebalance, moved
// by the plan's own moves (a probe would lag behind them).
type serverUse struct {
	name       string
	used, size int64
}

func (s serverUse) frac() float64 { return float64(s.used) / float64(s.size) }

// Rebalance moves volumes (primary and its copy together: the source's
// copy is dropped) from the fullest healthy server to the emptiest, one at
// a time, until their used fractions are within api.RebalanceTolerance or
// no volume on the fullest fits (one whose used bytes are at most half the
// gap, with no copy on the emptiest already). Lines as Drain's.
func (c *ControllerServer) Rebalance(ctx context.Context, emit func(api.MoveEvent)) error {
	var use []serverUse
	for _, m := range c.servers.List() {
		if st := m.Status(); st.Healthy && st.Size > 0 {
			use = append(use, serverUse{m.Name, st.Used, st.Size})
		}
	}
	p := &progress{emit: emit}
	p.send(api.MoveEvent{Kind: api.MovePlan})
	end := api.MoveEvent{Kind: api.MoveDone}
	usedOf := map[string]int64{} // volume ID → used bytes, read once
	for range maxRebalanceMoves {
		if len(use) < 2 || ctx.Err() != nil {
			break
		}
		slices.SortFunc(use, func(a, b serverUse) int {
			switch {
			case a.frac() > b.frac():
				return -1
			case a.frac() < b.frac():
				return 1
			}
			return 0
		})
		full, empty := &use[0], &use[len(use)-1]
		if full.frac()-empty.frac() <= api.RebalanceTolerance {
			break
		}
		rec, used, err := c.pickToMove(ctx, full.name, empty.name, (full.used-empty.used)/2, usedOf)
		if err != nil {
			end.Error = err.Error()
			break
		}
		if rec.ID == "" {
			end.Error = fmt.Sprintf("nothing on %s fits the gap to %s", full.name, empty.name)
			break
		}
		p.total++
		ev := c.moveOff(context.WithoutCancel(ctx), rec.ID, full.name, empty.name, ReasonRebalance)
		p.send(ev)
		if ev.Kind == api.MoveFailed {
			usedOf[rec.ID] = -1 // not tried again this run
			continue
		}
		full.used -= used
		empty.used += used
	}
	if ctx.Err() != nil {
		end.Error = "stopped: " + ctx.Err().Error()
	}
	p.send(end)
	return nil
}

// pickToMove is the volume whose primary is on from, with no copy on to,
// using the most bytes at most limit (and more than none): the move that
// closes the gap most without overshooting it.
func (c *ControllerServer) pickToMove(ctx context.Context, from, to string, limit int64, usedOf map[string]int64) (placements.Record, int64, error) {
	recs, err := c.placements.List(ctx)
	if err != nil {
		return placements.Record{}, 0, fmt.Errorf("%w: listing placements: %v", errUnavailable, err)
	}
	m, ok := c.servers.Get(from)
	if !ok {
		return placements.Record{}, 0, fmt.Errorf("%w: server %q not known now", errUnavailable, from)
	}
	var best placements.Record
	var bestUsed int64
	for _, r := range recs {
		if r.Kind != placements.Volume || r.Server != from || slices.Contains(r.Servers(), to) {
			continue
		}
		used, ok := usedOf[r.ID]
		if !ok {
			if _, used, err = c.volumeSize(ctx, m, r.ID); err != nil {
				used = -1 // not readable now: not moved
			}
			usedOf[r.ID] = used
		}
		if used > 0 && used <= limit && used > bestUsed {
			best, bestUsed = r, used
		}
	}
	return best, bestUsed, nil
}
