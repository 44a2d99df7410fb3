package driver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/api"

	"github.com/dots-csi/dots/pkg/daemon"
	"github.com/dots-csi/dots/pkg/discovery"
	"github.com/dots-csi/dots/pkg/failover"
	"github.com/dots-csi/dots/pkg/health"
	"github.com/dots-csi/dots/pkg/kubeclient"
	"github.com/dots-csi/dots/pkg/mtls"
	"github.com/dots-csi/dots/pkg/placements"
	"github.com/dots-csi/dots/pkg/registry"
	"github.com/dots-csi/dots/pkg/replication"
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
	servers := registry.New(src, creds, registry.Options{Interval: cfg.ProbeInterval, ForgetAfter: cfg.ForgetAfter,
		Replication: ReplicationClient}, metrics)
	servers.Refresh(ctx)
	store, err := placements.Open(cfg.Placements)
	if err != nil {
		return err
	}
	// Before the hook is built: with --kubernetes-workloads it is this.
	kube, orphans, err := startWorkloads(&cfg, store, metrics)
	if err != nil {
		return err
	}
	var moved api.VolumeMoved
	if cfg.NewVolumeMoved != nil {
		if moved, err = cfg.NewVolumeMoved(cfg.RestartPodsOnPromotion); err != nil {
			return fmt.Errorf("what follows moved volumes (pods): %w", err)
		}
	}
	cs, err := NewControllerServer(servers, store, ControllerOptions{DefaultCapacity: size,
		CallTimeout: cfg.CallTimeout, ReadTimeout: cfg.ReadTimeout, Publish: cfg.Publish, VolumeMoved: moved}, metrics)
	if err != nil {
		return err
	}
	admin := cs.AdminHandlers()
	admin["/servers"] = servers
	admin[api.AdminPathOrphans] = orphans
	ids := NewIdentityServer(true, ServersReady(servers))
	background := []func(context.Context) error{
		func(ctx context.Context) error { servers.Run(ctx); return nil },
		func(ctx context.Context) error { cs.ReconcilePlacements(ctx, cfg.ReconcileInterval); return nil },
	}
	background = append(background, kube...)
	if cfg.PromoteAfter > 0 {
		background = append(background, func(ctx context.Context) error { return autoPromote(ctx, cs, cfg) })
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
			csi.RegisterGroupControllerServer(g, cs)
		},
		Codes:       ControllerCodes,
		HTTPAddress: cfg.HTTPAddress,
		Metrics:     metrics,
		Ready:       []health.Check{ServersReady(servers)},
		// The servers' list and addresses: not on the network.
		AdminSocket:   cfg.AdminSocket,
		AdminHandlers: admin,
		Background:    background,
	}, func(a daemon.Addrs) error {
		if ready != nil {
			ready(&Controller{Registry: servers, Addrs: a})
		}
		return nil
	})
}

// autoPromote runs the automatic promotions (--promote-after) in one
// controller: with Kubernetes placements, the one holding the
// PromotionLease in their namespace; otherwise (the local stack: one
// controller) this one.
func autoPromote(ctx context.Context, cs *ControllerServer, cfg ControllerConfig) error {
	kind, ns, _ := strings.Cut(cfg.Placements, ":")
	if kind != "kubernetes" {
		klog.InfoS("Automatic promotion on (single controller)", "after", cfg.PromoteAfter)
		cs.AutoPromote(ctx, cfg.PromoteAfter)
		return nil
	}
	rc, err := kubeclient.Config()
	if err != nil {
		return fmt.Errorf("automatic promotion: %w", err)
	}
	if ns, err = kubeclient.Namespace(ns); err != nil {
		return fmt.Errorf("automatic promotion: %w", err)
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	klog.InfoS("Automatic promotion on (leader only)", "after", cfg.PromoteAfter, "lease", PromotionLease, "namespace", ns)
	return failover.Lead(ctx, kc, ns, PromotionLease, "automatic promotion", func(term context.Context) error {
		cs.AutoPromote(term, cfg.PromoteAfter)
		return nil
	})
}

// ReplicationClient is a member's replication client: pkg/replication's,
// on the member's connection (registry.Options.Replication).
func ReplicationClient(_ discovery.Server, cc grpc.ClientConnInterface) api.ReplicationServer {
	return replication.NewClient(cc)
}

// PromotionLease is the Lease controller replicas elect the one that
// promotes automatically with.
const PromotionLease = "dots-volume-promotion"

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
