package workloads

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/dots-csi/dots/internal/poll"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // "" valid
	}{
		{Config{}, ""},
		{Config{Enabled: true, RestartPods: true, Selector: "app=dots"}, ""},
		{Config{RestartPods: true}, "needs --kubernetes-workloads"},
		{Config{Selector: "app=dots"}, "needs --kubernetes-workloads"},
		{Config{Enabled: true, Selector: "app in ("}, "--orphaned-pools-selector"},
		{Config{Enabled: true, Selector: "  "}, "selects every StatefulSet"},
		{Config{Enabled: true, OrphanInterval: -time.Second}, "negative"},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestKubeRun: the loop scans at once and the list follows the cluster;
// without a selector there is nothing to list.
func TestKubeRun(t *testing.T) {
	cs := fake.NewClientset(orphanWorld()...)
	k, err := newKube(cs, Config{Enabled: true, Driver: driver, Selector: "app.kubernetes.io/name=dots,app.kubernetes.io/component=server",
		Namespace: "dots", OrphanInterval: 10 * time.Millisecond}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- k.Run(ctx) }()
	poll.Until(t, 10*time.Second, "two orphaned pools listed", func() error {
		if got := k.Orphans(); len(got) != 2 {
			return fmt.Errorf("orphans %+v", got)
		}
		return nil
	})
	scale(t, cs, 3)
	poll.Until(t, 10*time.Second, "no orphaned pool after scaling up", func() error {
		if got := k.Orphans(); len(got) != 0 {
			return fmt.Errorf("orphans %+v", got)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	none, err := newKube(fake.NewClientset(), Config{Enabled: true, Driver: driver}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if got := none.Orphans(); got == nil || len(got) != 0 {
		t.Errorf("orphans without a selector: %#v, want an empty list", got)
	}
	none.events.Shutdown()
}

// TestKubeRunLeads: with a Lease, the loop lists orphans at once and
// records their Events only while this replica leads.
func TestKubeRunLeads(t *testing.T) {
	cs := fake.NewClientset(orphanWorld()...)
	k, err := newKube(cs, Config{Enabled: true, Driver: driver, Selector: "app.kubernetes.io/name=dots,app.kubernetes.io/component=server",
		Namespace: "dots", OrphanInterval: 10 * time.Millisecond}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	leadNow := make(chan struct{})
	k.lead = func(ctx context.Context, run func(context.Context) error) error {
		select {
		case <-leadNow:
		case <-ctx.Done():
			return nil
		}
		return run(ctx)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- k.Run(ctx) }()
	orphanEvents := func() int {
		l, err := cs.CoreV1().Events("dots").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range l.Items {
			if e.Reason == ReasonOrphanedPool {
				n++
			}
		}
		return n
	}
	poll.Until(t, 10*time.Second, "two orphaned pools listed", func() error {
		if got := k.Orphans(); len(got) != 2 {
			return fmt.Errorf("orphans %+v", got)
		}
		return nil
	})
	if n := orphanEvents(); n != 0 {
		t.Fatalf("%d OrphanedPool events before leading", n)
	}
	close(leadNow)
	poll.Until(t, 10*time.Second, "OrphanedPool events once leading", func() error {
		if n := orphanEvents(); n != 2 {
			return fmt.Errorf("%d events", n)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
