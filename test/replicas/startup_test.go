//go:build integration

package replicas

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dots-csi/dots/internal/poll"
	"github.com/dots-csi/dots/internal/replenv"
	"github.com/dots-csi/dots/pkg/api"
)

// TestStartupWaitsForAReplica: a replicated primary's server restarts
// while its only replica's server is down. It does not serve the volume
// (it cannot know that no newer generation exists), asks again every
// interval, and serves it once the replica answers.
func TestStartupWaitsForAReplica(t *testing.T) {
	srv := cluster(t, 2)
	a, b := srv[0], srv[1]
	every := interval()
	v := newVolume(t, a, "waiting", 64<<20, every, b)
	v.mustWrite(t, a, "data", replenv.RandomData(t, 64<<10))
	replenv.WaitSynced(t, b, v.id, time.Now(), 30*every)
	a.Stop()
	b.Stop()

	a.Start()
	// Two confirmations failed (the first at start, one an interval later).
	poll.Until(t, 30*every, a.Name+" asking its replica twice", func() error {
		if n := a.MetricSum(t, `dots_replication_failures_total{reason="startup",server="`+b.Name+`"}`); n < 2 {
			return fmt.Errorf("%.0f start-up confirmations failed", n)
		}
		return nil
	})
	if a.Exported(t)[v.export] || a.MetricSum(t, "dots_replication_unconfirmed_primaries") != 1 {
		t.Fatalf("%s serves %s before any replica confirmed it", a.Name, v.id)
	}
	if _, err := readNFS(t, a, v.export, "data"); err == nil {
		t.Fatalf("%s serves %s before any replica confirmed it", a.Name, v.id)
	}

	b.Start()
	poll.Until(t, 30*every, a.Name+" serving once its replica confirmed", func() error {
		if !a.Exported(t)[v.export] {
			return errNotYet
		}
		return nil
	})
	if data, err := readNFS(t, a, v.export, "data"); err != nil || replenv.Sum(data) != v.files["data"] {
		t.Fatalf("reading %s on %s after the confirmation: %v", v.id, a.Name, err)
	}
	if n := a.MetricSum(t, "dots_replication_unconfirmed_primaries"); n != 0 {
		t.Fatalf("%.0f primaries still unconfirmed", n)
	}
}

// TestStartupNeedsEveryReplica: three servers, A primary, B and C its
// replicas. A stops; B is promoted (generation 2) and stops before it sent
// anything to C, which still holds generation 1. A restarts: C's answer
// alone must not confirm it (B holds a newer generation), so A serves
// nothing until B answers, and then demotes itself.
func TestStartupNeedsEveryReplica(t *testing.T) {
	srv := cluster(t, 3)
	a, b, c := srv[0], srv[1], srv[2]
	every := interval()
	v := newVolume(t, a, "three", 64<<20, every, b, c)
	v.mustWrite(t, a, "data", replenv.RandomData(t, 64<<10))
	replenv.WaitSynced(t, b, v.id, time.Now(), 30*every)
	replenv.WaitSynced(t, c, v.id, time.Now(), 30*every)
	a.Stop()
	ctx := context.Background()
	// C is left out of B's replicas: it never hears of generation 2.
	bst := promoteOn(t, b, v.id, every, a)
	b.Stop()
	if cst, err := c.Replication().State(ctx, v.id); err != nil || cst.Generation != bst.Generation {
		t.Fatalf("%s's copy: %+v, %v; want generation %d", c.Name, cst, err, bst.Generation)
	}

	a.Start()
	poll.Until(t, 30*every, a.Name+" asking "+b.Name+" twice", func() error {
		if a.Exported(t)[v.export] {
			t.Fatalf("%s serves %s with only %s's confirmation, while %s holds a newer generation", a.Name, v.id, c.Name, b.Name)
		}
		if n := a.MetricSum(t, `dots_replication_failures_total{reason="startup",server="`+b.Name+`"}`); n < 2 {
			return fmt.Errorf("%.0f start-up confirmations failed", n)
		}
		return nil
	})
	if a.Exported(t)[v.export] || a.MetricSum(t, "dots_replication_unconfirmed_primaries") != 1 {
		t.Fatalf("%s serves %s with only %s's confirmation, while %s holds a newer generation", a.Name, v.id, c.Name, b.Name)
	}

	b.Start()
	poll.Until(t, 30*every, a.Name+" demoted once "+b.Name+" answers", func() error {
		if a.Exported(t)[v.export] {
			t.Fatalf("%s exports %s, which a newer generation serves elsewhere", a.Name, v.id)
		}
		st, err := a.Replication().State(ctx, v.id)
		switch {
		case err != nil:
			return err
		case st.Role != api.RoleReplica || st.Generation != bst.Generation+1:
			return fmt.Errorf("%s's copy: %s of generation %d", a.Name, st.Role, st.Generation)
		}
		return nil
	})
}
