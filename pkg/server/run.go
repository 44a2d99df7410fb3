package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/daemon"
	"github.com/dots-csi/dots/pkg/health"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/replication"
	"github.com/dots-csi/dots/pkg/replicator"
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
	// Before any pool command: a node without a usable OpenZFS module
	// stops the server here, with the reason in an Event on its pod.
	if err := checkZFSModule(ctx, cfg, zfsCmds, "/"); err != nil {
		err = fmt.Errorf("%w (--zfs-module-check=false skips this check)", err)
		reportStartFailure(err, os.Getenv)
		return err
	}
	// A file vdev smaller than --pool-file-size (its volume was expanded)
	// grows before the import, which makes the pool use it (grow.go).
	if _, err := zfs.GrowFiles(cfg.Vdevs, cfg.poolConfig(nil).FileSize); err != nil {
		klog.ErrorS(err, "The pool's file keeps its size", "pool", cfg.Pool)
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
	opts := cfg.options()
	opts.VolumesPath = pool.VolumesMountpoint()
	opts.Zone = cfg.Zone.resolve(ctx)
	srv, err := New(opts, pool, ganesha, checks...)
	if err != nil {
		return err
	}
	// Replication first: a replicated primary is served only once a
	// replica confirms no newer generation exists (the start-up rule).
	repl, peers, err := startReplication(ctx, cfg, pool, srv, metrics)
	if err != nil {
		return err
	}
	defer peers.Close()
	n, unmounted, err := srv.RestoreExports(ctx)
	if err != nil {
		return fmt.Errorf("exporting the pool's volumes: %w", err)
	}
	klog.InfoS("Volumes exported", "count", n, "notMounted", unmounted)
	monitor := NewPoolMonitor(pool, ganesha.Status, cfg.Ops, metrics) // pool metrics, scheduled scrubs, the manifest's state
	srv.SetPoolMonitor(monitor)
	reconciler := NewReconciler(srv, metrics)
	// The pool uses what its vdevs gained while no server ran, and what
	// they gain from now on (an expanded PV).
	grower := zfs.NewGrower(pool, cfg.Vdevs)
	if _, err := grower.Check(ctx); err != nil {
		klog.ErrorS(err, "Letting the pool use all of its vdevs; tried again every reconcile interval", "pool", cfg.Pool)
	}

	return daemon.Run(ctx, daemon.Spec{
		Name:     "storage server " + cfg.Name,
		Endpoint: cfg.Endpoint,
		Creds:    creds,
		Register: func(g *grpc.Server) {
			csi.RegisterIdentityServer(g, srv)
			csi.RegisterControllerServer(g, srv)
			csi.RegisterGroupControllerServer(g, srv)
			replication.Register(g, repl)
		},
		Codes:       ErrorCodes,
		HTTPAddress: cfg.HTTPAddress,
		Metrics:     metrics,
		Ready:       checks,
		Background: []func(context.Context) error{
			func(ctx context.Context) error { pool.Maintain(ctx, cfg.ReconcileInterval); return nil },
			func(ctx context.Context) error { return reconciler.Run(ctx, cfg.ReconcileInterval) },
			func(ctx context.Context) error { grower.Run(ctx, cfg.ReconcileInterval); return nil },
			monitor.Run,
			repl.Run,
		},
	}, func(a daemon.Addrs) error {
		klog.InfoS("Storage server ready", "name", cfg.Name, "pool", cfg.Pool, "endpoint", a.GRPC, "http", a.HTTP, "nfsPort", gcfg.NFSPort)
		if ready != nil {
			ready(Running{Pool: pool, Endpoint: a.GRPC, HTTP: a.HTTP})
		}
		return nil
	})
}

// startReplication makes the server's replication manager and holds back
// the replicated primaries it finds until a replica confirms them.
func startReplication(ctx context.Context, cfg Config, pool *zfs.Pool, srv *Server, reg *prometheus.Registry) (*replicator.Manager, *replication.Peers, error) {
	creds, err := cfg.peerCredentials()
	if err != nil {
		return nil, nil, fmt.Errorf("credentials for other servers: %w", err)
	}
	peers := replication.NewPeers(grpc.WithTransportCredentials(creds))
	m, err := replicator.New(replicator.Config{Server: cfg.Name, CallTimeout: cfg.Replication.CallTimeout, Registerer: reg,
		Dial: func(addr string) (replicator.Peer, error) { return peers.Client(addr) }}, pool, srv.ReplicationHost())
	if err != nil {
		return nil, nil, err
	}
	if err := m.Load(ctx); err != nil {
		_ = peers.Close()
		return nil, nil, fmt.Errorf("finding replicated primaries: %w", err)
	}
	srv.SetReplication(m)
	return m, peers, nil
}
