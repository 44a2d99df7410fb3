package driver

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/version"
	"github.com/dots-csi/dots/pkg/workloads"
)

// startWorkloads builds the controller's Kubernetes side of replicas
// (pkg/workloads) when --kubernetes-workloads asks for it: the hook told of
// every moved volume becomes its (unless cfg names another), its loop joins
// the background and its orphaned pools the admin socket. Without it,
// nothing is told and no orphaned pool is listed.
func startWorkloads(cfg *ControllerConfig, store placements.Store, reg prometheus.Registerer) (background []func(context.Context) error, orphans http.Handler, err error) {
	wc := cfg.Workloads
	wc.Driver, wc.RestartPods = version.DriverName, cfg.RestartPodsOnPromotion
	if !wc.Enabled {
		if err := wc.Validate(); err != nil {
			return nil, nil, err
		}
		return nil, orphansHandler(func() []api.OrphanedPool { return []api.OrphanedPool{} }), nil
	}
	wc.Counts = placedCounts(store)
	kube, err := workloads.New(wc, reg)
	if err != nil {
		return nil, nil, err
	}
	if cfg.NewVolumeMoved == nil {
		cfg.NewVolumeMoved = func(bool) (api.VolumeMoved, error) { return kube, nil }
	}
	klog.InfoS("Kubernetes workloads on", "restartPodsOnPromotion", wc.RestartPods, "orphanedPoolsSelector", wc.Selector)
	return []func(context.Context) error{kube.Run}, orphansHandler(kube.Orphans), nil
}

// placedCounts counts the volumes (primaries and replicas) the placement
// records put on each server.
func placedCounts(store placements.Store) workloads.VolumeCounts {
	return func(ctx context.Context) (map[string]int, error) {
		recs, err := store.List(ctx)
		if err != nil {
			return nil, err
		}
		n := map[string]int{}
		for _, r := range recs {
			if r.Kind != placements.Volume {
				continue
			}
			n[r.Server]++
			for _, s := range r.Replicas {
				n[s]++
			}
		}
		return n, nil
	}
}

// orphansHandler serves api.AdminPathOrphans.
func orphansHandler(list func() []api.OrphanedPool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(list()); err != nil {
			klog.ErrorS(err, "Writing "+api.AdminPathOrphans)
		}
	})
}
