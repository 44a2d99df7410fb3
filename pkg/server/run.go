package server

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/daemon"
	"github.com/dots-csi/dots/pkg/health"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
	"github.com/dots-csi/dots/pkg/zfs/command"
)

// Running describes a started server, for callers that wait for readiness.
type Running struct {
	Pool     *zfs.Pool
	Endpoint string // the gRPC address actually bound
	HTTP     string // the HTTP address actually bound
}

// Run opens the pool, starts the NFS server, exports every volume again and
// serves the API until ctx is done. Then it stops in reverse order: the API,
// the NFS server, and (with ExportOnExit) the pool, so another node can
// import it. ready, if not nil, is called once everything serves.
func Run(ctx context.Context, cfg Config, ready func(Running)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	metrics := daemon.NewRegistry()
	creds, err := cfg.credentials(metrics) // before the pool: bad certificates fail at once
	if err != nil {
		return err
	}
	zfsCmds, err := command.NewHost(command.HostConfig{Binaries: cfg.binaries(), Timeouts: cfg.ZFSTimeouts, Registerer: metrics})
	if err != nil {
		return err
	}
	pool, err := zfs.Open(ctx, cfg.poolConfig(zfsCmds))
	if err != nil {
		if ctx.Err() != nil {
			klog.InfoS("Stopped while opening the pool", "pool", cfg.Pool)
			return nil // a stop, not a failure
		}
		return fmt.Errorf("opening pool %s: %w", cfg.Pool, err)
	}
	defer func() {
		if !cfg.ExportOnExit {
			// Imported but no longer served: the next server on this
			// host may take it.
			_ = pool.Close()
			return
		}
		// A fresh context: ctx is already cancelled when we get here.
		ectx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pool.ExportPool(ectx); err != nil {
			klog.ErrorS(err, "Exporting the pool on exit", "pool", cfg.Pool)
		}
	}()

	gcfg := cfg.nfsConfig()
	gcfg.RecoveryDir = filepath.Join(pool.StateDir(), "nfs-recovery")
	// What NFS clients wait for after this start: new opens until grace
	// ends, early once every client it recorded reclaimed.
	tick, full := gcfg.GraceTiming()
	klog.InfoS("NFSv4 grace", "gracePeriod", gcfg.GracePeriod, "leaseLifetime", gcfg.LeaseLifetime,
		"checkedEvery", tick, "lastsWithoutReclaims", full)
	if full != gcfg.GracePeriod && gcfg.GracePeriod > 0 {
		klog.InfoS("The grace period is not a multiple of ganesha's check interval (half the lease, at most 10s): it lasts longer",
			"gracePeriod", gcfg.GracePeriod, "lasts", full)
	}
	ganesha, err := nfs.NewGanesha(gcfg)
	if err != nil {
		return err
	}
	if err := ganesha.Start(ctx); err != nil {
		return fmt.Errorf("starting the NFS server: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := ganesha.Stop(sctx); err != nil {
			klog.ErrorS(err, "Stopping the NFS server")
		}
	}()

	checks := []health.Check{pool.Healthy, ganesha.Healthy, zfsCmds.Healthy}
	srv, err := New(cfg.options(), pool, ganesha, checks...)
	if err != nil {
		return err
	}
	n, unmounted, err := srv.RestoreExports(ctx)
	if err != nil {
		return fmt.Errorf("exporting the pool's volumes: %w", err)
	}
	klog.InfoS("Volumes exported", "count", n, "notMounted", unmounted)
	reconciler := NewReconciler(srv, metrics)

	return daemon.Run(ctx, daemon.Spec{
		Name:     "storage server " + cfg.Name,
		Endpoint: cfg.Endpoint,
		Creds:    creds,
		Register: func(g *grpc.Server) {
			csi.RegisterIdentityServer(g, srv)
			csi.RegisterControllerServer(g, srv)
		},
		Codes:       ErrorCodes,
		HTTPAddress: cfg.HTTPAddress,
		Metrics:     metrics,
		Ready:       checks,
		Background: []func(context.Context) error{
			func(ctx context.Context) error { pool.Maintain(ctx, cfg.ReconcileInterval); return nil },
			func(ctx context.Context) error { return reconciler.Run(ctx, cfg.ReconcileInterval) },
			NewPoolMonitor(pool, ganesha.Status, cfg.Ops, metrics).Run, // pool metrics, scheduled scrubs
		},
	}, func(a daemon.Addrs) error {
		klog.InfoS("Storage server ready", "name", cfg.Name, "pool", cfg.Pool, "endpoint", a.GRPC, "http", a.HTTP, "nfsPort", gcfg.NFSPort)
		if ready != nil {
			ready(Running{Pool: pool, Endpoint: a.GRPC, HTTP: a.HTTP})
		}
		return nil
	})
}
