package driver

import (
	"context"
	"errors"
	"net/http"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/daemon"
	"github.com/dots-csi/dots/pkg/failover"
	"github.com/dots-csi/dots/pkg/health"
	"github.com/dots-csi/dots/pkg/mtls"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
)

// Controller is a running controller's parts, for callers that wait for it.
type Controller struct {
	Registry *registry.Registry
	Addrs    daemon.Addrs
}

// RunController serves the controller until ctx is done. ready, if not
// nil, is called once the endpoints listen.
func RunController(ctx context.Context, cfg ControllerConfig, ready func(*Controller)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	size, _ := cfg.defaultSize()
	src, err := cfg.source()
	if err != nil {
		return err
	}
	creds, err := mtls.ClientCredentials(cfg.TLS)
	if err != nil {
		return err
	}
	metrics := daemon.NewRegistry()
	servers := registry.New(src, creds, registry.Options{Interval: cfg.ProbeInterval, ForgetAfter: cfg.ForgetAfter}, metrics)
	servers.Refresh(ctx)
	store, err := placements.Open(cfg.Placements)
	if err != nil {
		return err
	}
	cs, err := NewControllerServer(servers, store, ControllerOptions{DefaultCapacity: size,
		CallTimeout: cfg.CallTimeout, ReadTimeout: cfg.ReadTimeout, Publish: cfg.Publish}, metrics)
	if err != nil {
		return err
	}
	ids := NewIdentityServer(true, ServersReady(servers))
	background := []func(context.Context) error{
		func(ctx context.Context) error { servers.Run(ctx); return nil },
		func(ctx context.Context) error { cs.ReconcilePlacements(ctx, cfg.ReconcileInterval); return nil },
	}
	if cfg.Failover.Enabled() {
		background = append(background, func(ctx context.Context) error { return failover.Run(ctx, cfg.Failover, metrics) })
	} else {
		klog.InfoS("Server failover off: a storage server on a dead node waits for someone to delete its pod", "selector", cfg.Failover.Selector, "after", cfg.Failover.After)
	}
	return daemon.Run(ctx, daemon.Spec{
		Name:     "controller",
		Endpoint: cfg.Endpoint,
		Register: func(g *grpc.Server) {
			csi.RegisterIdentityServer(g, ids)
			csi.RegisterControllerServer(g, cs)
		},
		Codes:       ControllerCodes,
		HTTPAddress: cfg.HTTPAddress,
		Metrics:     metrics,
		Ready:       []health.Check{ServersReady(servers)},
		// The servers' list and addresses: not on the network.
		AdminSocket:   cfg.AdminSocket,
		AdminHandlers: map[string]http.Handler{"/servers": servers},
		Background:    background,
	}, func(a daemon.Addrs) error {
		if ready != nil {
			ready(&Controller{Registry: servers, Addrs: a})
		}
		return nil
	})
}

// ServersReady is the controller's readiness: at least one storage server
// answers.
func ServersReady(servers *registry.Registry) health.Check {
	return func() error {
		if !servers.AnyHealthy() {
			return errors.New("no storage server answers")
		}
		return nil
	}
}
