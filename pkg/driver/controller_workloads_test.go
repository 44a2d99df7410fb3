package driver

import (
	"context"
	"maps"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dots-csi/dots/pkg/placements"
)

func TestPlacedCounts(t *testing.T) {
	store := placements.NewMemory()
	ctx := context.Background()
	for _, r := range []placements.Record{
		{Kind: placements.Volume, ID: "a", Server: "s0", Replicas: []string{"s1", "s2"}},
		{Kind: placements.Volume, ID: "b", Server: "s1"},
		{Kind: placements.Snapshot, ID: "snap", Server: "s2"},
	} {
		if err := store.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := placedCounts(store)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"s0": 1, "s1": 2, "s2": 1}; !maps.Equal(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
}

// Without --kubernetes-workloads the hook stays unset and the admin path
// lists nothing; asking to restart pods then is refused.
func TestWorkloadsOff(t *testing.T) {
	cfg := ControllerConfig{}
	bg, orphans, err := startWorkloads(&cfg, placements.NewMemory(), prometheus.NewRegistry())
	if err != nil || len(bg) != 0 || cfg.NewVolumeMoved != nil {
		t.Fatalf("off: background %d, hook set %v, %v", len(bg), cfg.NewVolumeMoved != nil, err)
	}
	rec := httptest.NewRecorder()
	orphans.ServeHTTP(rec, httptest.NewRequest("GET", "/servers/orphaned", nil))
	if body := strings.TrimSpace(rec.Body.String()); body != "[]" {
		t.Errorf("orphans %q, want []", body)
	}
	cfg = ControllerConfig{RestartPodsOnPromotion: true}
	if _, _, err := startWorkloads(&cfg, placements.NewMemory(), prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), "--kubernetes-workloads") {
		t.Errorf("restart without Kubernetes: %v", err)
	}
}
