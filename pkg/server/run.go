package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/dots-csi/dots/pkg/csirpc"
	"github.com/dots-csi/dots/pkg/health"
	"github.com/dots-csi/dots/pkg/nfs"
	"github.com/dots-csi/dots/pkg/zfs"
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
	mode, _ := zfs.ParseCLI(cfg.ZFSCLI)
	if _, err := zfs.SetupCLI(ctx, mode, filepath.Join(cfg.RunDir, "zfs-cli")); err != nil {
		return err
	}
	pool, err := zfs.Open(ctx, cfg.poolConfig())
	if err != nil {
		return fmt.Errorf("opening pool %s: %w", cfg.Pool, err)
	}
	defer func() {
		if !cfg.ExportOnExit {
			return
		}
		// A fresh context: ctx is already cancelled when we get here.
		ectx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pool.ExportPool(ectx); err != nil {
			klog.ErrorS(err, "Exporting the pool on exit", "pool", cfg.Pool)
		} else {
			klog.InfoS("Pool exported", "pool", cfg.Pool)
		}
	}()

	gcfg := cfg.nfsConfig()
	gcfg.RecoveryDir = filepath.Join(pool.StateDir(), "nfs-recovery")
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

	size, _ := cfg.defaultSize()
	srv, err := New(Options{Name: cfg.Name, DefaultCapacity: size}, pool, ganesha, pool, ganesha)
	if err != nil {
		return err
	}
	n, err := srv.RestoreExports(ctx)
	if err != nil {
		return fmt.Errorf("exporting the pool's volumes: %w", err)
	}
	klog.InfoS("Volumes exported", "count", n)

	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	g := csirpc.NewServer(csirpc.NewMetrics(reg))
	csi.RegisterIdentityServer(g, srv)
	csi.RegisterControllerServer(g, srv)
	lis, err := csirpc.Listen(cfg.Endpoint)
	if err != nil {
		return err
	}
	hs, err := health.Listen(cfg.HTTPAddress, reg, pool.Healthy, ganesha.Healthy)
	if err != nil {
		lis.Close()
		return err
	}
	klog.InfoS("Storage server ready", "name", cfg.Name, "pool", cfg.Pool, "endpoint", lis.Addr().String(), "http", hs.Addr(), "nfsPort", gcfg.NFSPort)
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return hs.Serve(gctx) })
	eg.Go(func() error { return csirpc.Serve(gctx, lis, g, 10*time.Second) })
	if ready != nil {
		ready(Running{Pool: pool, Endpoint: lis.Addr().String(), HTTP: hs.Addr()})
	}
	err = eg.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	klog.InfoS("Storage server stopping", "name", cfg.Name)
	return err
}
